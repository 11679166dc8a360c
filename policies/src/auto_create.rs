//! The auto-create gate (SPEC §7): when a suggestion may become a task without the owner
//! pressing Act. All of: auto-create is on; the action is low risk; its target is clear;
//! policy allows it; and either the target is trusted or similar suggestions were acted
//! on repeatedly. A pure function, so every case is a row in a table.

use crate::action::{ActionView, Effect, Risk};

/// The owner's setting: off unless turned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCreate {
    pub enabled: bool,
    /// How many similar suggestions the owner must have acted on before one is created on
    /// their behalf (for targets that are not trusted).
    pub after_acted: u32,
}

impl Default for AutoCreate {
    fn default() -> AutoCreate {
        AutoCreate { enabled: false, after_acted: 3 }
    }
}

/// What the gate looks at for one suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub action: &'a ActionView,
    /// What policy said of the action.
    pub effect: Effect,
    pub risk: Risk,
    /// The target is the owner's own (`self`, or one of their accounts).
    pub target_trusted: bool,
    /// Similar suggestions (same class, same kind of action, same target) the owner acted on.
    pub similar_acted: u32,
}

/// `Ok` when the suggestion may become a task at once; otherwise the first condition it
/// fails, for the log.
pub fn gate(setting: AutoCreate, c: &Candidate<'_>) -> Result<(), &'static str> {
    if !setting.enabled {
        return Err("auto-create is off");
    }
    if c.risk != Risk::Low {
        return Err("only low-risk actions are created on their own");
    }
    if c.action.target.trim().is_empty() {
        return Err("the target is not clear");
    }
    if c.effect != Effect::Allow {
        return Err("policy does not allow it without asking");
    }
    if !c.target_trusted && c.similar_acted < setting.after_acted {
        return Err("the target is not trusted and similar suggestions were not acted on often enough");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionKind;

    #[test]
    fn every_condition_is_required() {
        let on = AutoCreate { enabled: true, after_acted: 3 };
        let off = AutoCreate { enabled: false, after_acted: 3 };
        let reminder = ActionView { kind: ActionKind::Reminder, target: "self".into() };
        let unclear = ActionView { kind: ActionKind::Reminder, target: " ".into() };
        let message = ActionView { kind: ActionKind::Message, target: "telegram:42".into() };
        use Effect::{Allow, Ask, Deny};
        use Risk::{High, Low, Medium};
        // (setting, action, effect, risk, trusted, similar acted) → passes?
        let table: [(AutoCreate, &ActionView, Effect, Risk, bool, u32, bool); 11] = [
            (on, &reminder, Allow, Low, true, 0, true),
            (off, &reminder, Allow, Low, true, 9, false),
            (on, &reminder, Ask, Low, true, 9, false),
            (on, &reminder, Deny, Low, true, 9, false),
            (on, &message, Allow, Medium, true, 9, false),
            (on, &message, Allow, High, true, 9, false),
            (on, &unclear, Allow, Low, true, 9, false),
            (on, &message, Allow, Low, false, 2, false),
            (on, &message, Allow, Low, false, 3, true),
            (on, &message, Allow, Low, true, 0, true),
            (AutoCreate { enabled: true, after_acted: 0 }, &message, Allow, Low, false, 0, true),
        ];
        for (n, (setting, action, effect, risk, trusted, acted, passes)) in table.into_iter().enumerate() {
            let candidate = Candidate { action, effect, risk, target_trusted: trusted, similar_acted: acted };
            assert_eq!(gate(setting, &candidate).is_ok(), passes, "row {n}: {:?}", gate(setting, &candidate));
        }
    }
}
