//! Which actions may run: each action's kind, target and risk class, and the owner's
//! allow / ask / deny rules over them.
//!
//! The rules are a list; every rule that matches an action votes, and the strictest vote
//! wins (deny over ask over allow), so no allow rule can ever open what a deny rule closes.
//! With no matching rule, what stays on this machine and cannot hurt (a note, a reminder)
//! is allowed, and everything else — above all anything leaving the machine — asks.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A message to a chat or mail target: leaves the machine, speaks for the owner.
    Message,
    /// Remind the owner later: stays with loopgate.
    Reminder,
    /// Call a named endpoint from the configuration.
    Webhook,
    /// Run a named, configured command.
    Command,
    /// Run a configured workflow, whose steps have their own checkpoints.
    Workflow,
    /// Write to loopgate's memory.
    Note,
}

impl ActionKind {
    pub const ALL: [ActionKind; 6] = [
        ActionKind::Message,
        ActionKind::Reminder,
        ActionKind::Webhook,
        ActionKind::Command,
        ActionKind::Workflow,
        ActionKind::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Message => "message",
            ActionKind::Reminder => "reminder",
            ActionKind::Webhook => "webhook",
            ActionKind::Command => "command",
            ActionKind::Workflow => "workflow",
            ActionKind::Note => "note",
        }
    }

    pub fn parse(value: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// Whether its effect reaches beyond loopgate's own database: another person, another
    /// service, or a program on this machine.
    pub fn has_outside_effect(self) -> bool {
        !matches!(self, ActionKind::Reminder | ActionKind::Note)
    }

    /// The built-in risk class: what a mistake would cost.
    pub fn risk(self) -> Risk {
        match self {
            ActionKind::Reminder | ActionKind::Note => Risk::Low,
            // Words to someone, or a workflow whose own steps stop at approvals.
            ActionKind::Message | ActionKind::Workflow => Risk::Medium,
            // Another service's state, or a program: possibly irreversible.
            ActionKind::Webhook | ActionKind::Command => Risk::High,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    pub fn parse(value: &str) -> Option<Risk> {
        [Risk::Low, Risk::Medium, Risk::High].into_iter().find(|r| r.as_str() == value)
    }
}

/// What a rule says about the actions it matches, strictest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Ask,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Ask => "ask",
            Effect::Deny => "deny",
        }
    }

    pub fn parse(value: &str) -> Option<Effect> {
        [Effect::Allow, Effect::Ask, Effect::Deny].into_iter().find(|e| e.as_str() == value)
    }
}

/// An action as policy sees it: what it is and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionView {
    pub kind: ActionKind,
    /// `channel:conversation` for a message (`telegram:12345`, `email:bob@example.org`),
    /// the endpoint, command or workflow name for those kinds, `self` for notes and
    /// reminders, and empty when the action does not say (a reply whose target is unclear).
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("an action must be an object with a \"kind\"")]
    NotAnAction,
    #[error("action kind {0:?} is not one of message, reminder, webhook, command, workflow, note")]
    UnknownKind(String),
}

impl ActionView {
    /// Reads the kind and target of an action object `{kind, …}`.
    pub fn of(action: &serde_json::Value) -> Result<ActionView, ActionError> {
        let kind = action.get("kind").and_then(|k| k.as_str()).ok_or(ActionError::NotAnAction)?;
        let kind = ActionKind::parse(kind).ok_or_else(|| ActionError::UnknownKind(kind.to_owned()))?;
        let text = |field: &str| action.get(field).and_then(|v| v.as_str()).unwrap_or("").trim().to_owned();
        let target = match kind {
            ActionKind::Reminder | ActionKind::Note => "self".to_owned(),
            ActionKind::Webhook => text("endpoint"),
            ActionKind::Command => text("command"),
            ActionKind::Workflow => text("workflow"),
            ActionKind::Message => {
                let target = action.get("target");
                let field = |name: &str| {
                    target.and_then(|t| t.get(name)).and_then(|v| match v {
                        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                };
                match (field("channel"), field("conversation")) {
                    (Some(channel), Some(conversation)) => format!("{channel}:{conversation}"),
                    (Some(channel), None) => format!("{channel}:"),
                    _ => String::new(),
                }
            }
        };
        Ok(ActionView { kind, target })
    }

    /// Whether the action says where it goes; an unclear target always asks.
    pub fn target_is_clear(&self) -> bool {
        !self.target.is_empty() && !self.target.ends_with(':')
    }
}

/// One allow / ask / deny rule. Every condition it names must hold; a rule naming none
/// matches every action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub effect: Effect,
    /// Only actions of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActionKind>,
    /// Only targets matching this pattern, where `*` stands for any run of characters
    /// (`telegram:*`, `deploy-*`, `email:*@example.org`); compared without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Only actions at least this risky.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_risk: Option<Risk>,
}

impl Rule {
    fn matches(&self, action: &ActionView, risk: Risk) -> bool {
        self.kind.is_none_or(|k| k == action.kind)
            && self.min_risk.is_none_or(|min| risk >= min)
            && self.target.as_deref().is_none_or(|pattern| glob_matches(pattern, &action.target))
    }
}

/// The owner's rules, in the order the configuration lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// Policy's answer for one action, with the reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub effect: Effect,
    pub risk: Risk,
    pub reason: String,
}

impl Policy {
    /// No rules: the defaults alone.
    pub const fn empty() -> Policy {
        Policy { rules: Vec::new() }
    }

    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn assess(&self, action: &ActionView) -> Assessment {
        let risk = action.kind.risk();
        let strictest = self.rules.iter().enumerate().filter(|(_, r)| r.matches(action, risk)).max_by(
            // Strictest effect; among equals the first listed, which is the one a reader
            // finds first.
            |(ia, a), (ib, b)| a.effect.cmp(&b.effect).then(ib.cmp(ia)),
        );
        let (mut effect, mut reason) = match strictest {
            Some((index, rule)) => (rule.effect, format!("rule {} ({})", index + 1, describe(rule))),
            None if action.kind.has_outside_effect() => {
                (Effect::Ask, format!("{} has an effect outside loopgate: ask by default", action.kind))
            }
            None => (Effect::Allow, format!("a {} stays with loopgate: allowed by default", action.kind)),
        };
        // An allow rule cannot vouch for a message whose recipient nobody knows yet.
        if effect == Effect::Allow && action.kind.has_outside_effect() && !action.target_is_clear() {
            effect = Effect::Ask;
            reason = format!("{reason}, but the target is unclear: ask");
        }
        Assessment { effect, risk, reason }
    }
}

fn describe(rule: &Rule) -> String {
    let mut parts = vec![rule.effect.as_str().to_owned()];
    if let Some(kind) = rule.kind {
        parts.push(format!("kind {kind}"));
    }
    if let Some(target) = &rule.target {
        parts.push(format!("target {target}"));
    }
    if let Some(risk) = rule.min_risk {
        parts.push(format!("risk ≥ {}", risk.as_str()));
    }
    parts.join(", ")
}

/// `*` matches any run of characters (none included); everything else matches itself,
/// ignoring ASCII case.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else { return rest.is_empty() };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(action: serde_json::Value) -> ActionView {
        ActionView::of(&action).unwrap()
    }

    fn rule(effect: Effect, kind: Option<ActionKind>, target: Option<&str>, min_risk: Option<Risk>) -> Rule {
        Rule { effect, kind, target: target.map(str::to_owned), min_risk }
    }

    #[test]
    fn targets_are_read_from_each_kind_of_action() {
        let cases = [
            (json!({"kind": "message", "target": {"channel": "telegram", "conversation": "123"}}), "telegram:123"),
            (json!({"kind": "message", "target": {"channel": "discord", "conversation": 42}}), "discord:42"),
            (json!({"kind": "message", "target": {"channel": "email"}}), "email:"),
            (json!({"kind": "message", "target": null, "text": "hi"}), ""),
            (json!({"kind": "webhook", "endpoint": "deploy"}), "deploy"),
            (json!({"kind": "command", "command": "backup"}), "backup"),
            (json!({"kind": "workflow", "workflow": "weekly-status"}), "weekly-status"),
            (json!({"kind": "note", "text": "x"}), "self"),
            (json!({"kind": "reminder", "text": "x"}), "self"),
        ];
        for (action, target) in cases {
            assert_eq!(view(action.clone()).target, target, "{action}");
        }
        assert_eq!(ActionView::of(&json!({"kind": "shell"})), Err(ActionError::UnknownKind("shell".into())));
        assert_eq!(ActionView::of(&json!("rm -rf /")), Err(ActionError::NotAnAction));
        assert_eq!(ActionView::of(&json!({"text": "x"})), Err(ActionError::NotAnAction));
    }

    #[test]
    fn without_rules_only_what_stays_with_loopgate_runs_unasked() {
        let policy = Policy::default();
        let cases = [
            (json!({"kind": "note", "text": "x"}), Effect::Allow, Risk::Low),
            (json!({"kind": "reminder", "text": "x"}), Effect::Allow, Risk::Low),
            (
                json!({"kind": "message", "target": {"channel": "telegram", "conversation": "1"}}),
                Effect::Ask,
                Risk::Medium,
            ),
            (json!({"kind": "workflow", "workflow": "w"}), Effect::Ask, Risk::Medium),
            (json!({"kind": "webhook", "endpoint": "deploy"}), Effect::Ask, Risk::High),
            (json!({"kind": "command", "command": "backup"}), Effect::Ask, Risk::High),
        ];
        for (action, effect, risk) in cases {
            let assessment = policy.assess(&view(action.clone()));
            assert_eq!((assessment.effect, assessment.risk), (effect, risk), "{action}");
        }
    }

    #[test]
    fn the_strictest_matching_rule_wins_and_deny_always_does() {
        use ActionKind::*;
        let policy = Policy::new(vec![
            rule(Effect::Allow, Some(Message), Some("telegram:*"), None),
            rule(Effect::Deny, Some(Message), Some("telegram:666"), None),
            rule(Effect::Allow, Some(Webhook), Some("deploy-*"), None),
            rule(Effect::Ask, None, None, Some(Risk::High)),
            rule(Effect::Deny, Some(Command), None, None),
            rule(Effect::Allow, Some(Command), Some("backup"), None),
            rule(Effect::Deny, Some(Note), Some("self"), None),
        ]);
        let table = [
            (json!({"kind": "message", "target": {"channel": "telegram", "conversation": "1"}}), Effect::Allow),
            (json!({"kind": "message", "target": {"channel": "TELEGRAM", "conversation": "1"}}), Effect::Allow),
            (json!({"kind": "message", "target": {"channel": "telegram", "conversation": "666"}}), Effect::Deny),
            (json!({"kind": "message", "target": {"channel": "discord", "conversation": "1"}}), Effect::Ask),
            // Allowed by pattern, but high risk asks: the stricter vote wins.
            (json!({"kind": "webhook", "endpoint": "deploy-prod"}), Effect::Ask),
            // The allow for "backup" never outvotes the deny for every command.
            (json!({"kind": "command", "command": "backup"}), Effect::Deny),
            (json!({"kind": "note", "text": "x"}), Effect::Deny),
            (json!({"kind": "reminder", "text": "x"}), Effect::Allow),
        ];
        for (action, effect) in table {
            assert_eq!(policy.assess(&view(action.clone())).effect, effect, "{action}");
        }
        let denied = policy.assess(&view(json!({"kind": "command", "command": "backup"})));
        assert_eq!(denied.reason, "rule 5 (deny, kind command)");
    }

    #[test]
    fn an_allowed_message_with_an_unclear_target_still_asks() {
        let policy = Policy::new(vec![rule(Effect::Allow, Some(ActionKind::Message), None, None)]);
        let unclear = policy.assess(&view(json!({"kind": "message", "target": {"channel": "telegram"}})));
        assert_eq!(unclear.effect, Effect::Ask);
        assert!(unclear.reason.ends_with("the target is unclear: ask"), "{}", unclear.reason);
        let clear = view(json!({"kind": "message", "target": {"channel": "telegram", "conversation": "9"}}));
        assert_eq!(policy.assess(&clear).effect, Effect::Allow);
    }

    #[test]
    fn patterns_match_whole_targets() {
        let cases = [
            ("telegram:*", "telegram:123", true),
            ("telegram:*", "telegram:", true),
            ("telegram:*", "xtelegram:1", false),
            ("deploy", "deploy", true),
            ("deploy", "deploy-prod", false),
            ("*-prod", "deploy-prod", true),
            ("*-prod", "deploy-production", false),
            ("email:*@example.org", "email:Bob@Example.org", true),
            ("email:*@example.org", "email:bob@example.org.evil.test", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-c-b", false),
            ("*", "", true),
            ("ab*ab", "ab", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::parse(kind.as_str()), Some(kind));
        }
        for effect in [Effect::Allow, Effect::Ask, Effect::Deny] {
            assert_eq!(Effect::parse(effect.as_str()), Some(effect));
        }
        for risk in [Risk::Low, Risk::Medium, Risk::High] {
            assert_eq!(Risk::parse(risk.as_str()), Some(risk));
        }
        let parsed: Rule =
            serde_json::from_value(json!({"effect": "deny", "kind": "command", "min_risk": "high"})).unwrap();
        assert_eq!(parsed, rule(Effect::Deny, Some(ActionKind::Command), None, Some(Risk::High)));
        assert!(serde_json::from_value::<Rule>(json!({"effect": "deny", "kinds": "command"})).is_err());
    }
}
