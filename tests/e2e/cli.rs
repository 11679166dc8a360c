//! The command line: configuration errors, migrate, signal, doctor, clean exit on SIGTERM.

use crate::helpers::{ServeProcess, run_cli, write_config};

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[owner]\ntimezone = \"UTC\"\ntelegram_user_idz = [1]\n");
    let (code, _, stderr) = run_cli(&config, &["serve"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("telegram_user_idz"), "{stderr}");
    assert!(!dir.path().join("loopgate.db").exists(), "nothing was created");

    let config = write_config(dir.path(), "");
    let (code, _, stderr) = run_cli(&config, &["serve"], &[("LOOPGATE_SERVER__LISTN", "127.0.0.1:1")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("listn"), "{stderr}");
}

#[test]
fn invalid_values_say_how_to_fix_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[owner]\ntimezone = \"Mars/Olympus\"\n");
    let (code, _, stderr) = run_cli(&config, &["migrate"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("owner.timezone") && stderr.contains("Europe/Berlin"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, _, stderr) = run_cli(&config, &["serve"], &[("LOOPGATE_SERVER__LISTEN", "0.0.0.0:0")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("api_token_env"), "{stderr}");
}

#[test]
fn migrate_then_signal_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, stdout, stderr) = run_cli(&config, &["migrate"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("applied migration 1"), "{stdout}");
    let (code, stdout, _) = run_cli(&config, &["migrate"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("up to date"), "{stdout}");

    let args = ["signal", "--source", "cli", "--external-id", "note-1", "--urgency", "high", "Call the plumber"];
    let (code, stdout, stderr) = run_cli(&config, &args, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "signal 1 recorded");
    let (code, stdout, _) = run_cli(&config, &[&args[..], &["--json"]].concat(), &[]);
    assert_eq!(code, 0);
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["duplicate"], true);

    let (code, _, stderr) = run_cli(&config, &["signal", "--urgency", "whenever", "x"], &[]);
    assert_eq!(code, 2, "clap refuses bad values");
    assert!(stderr.contains("whenever"), "{stderr}");
    let (code, _, stderr) = run_cli(&config, &["signal", "--payload", "{not json", "x"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--payload is not valid JSON"), "{stderr}");
}

#[test]
fn doctor_reports_ok_and_problems_with_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, stdout, _) = run_cli(&config, &["doctor"], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok    config"), "{stdout}");
    assert!(stdout.contains("migration(s) not applied yet"), "{stdout}");
    assert!(stdout.contains("0 problem(s)"), "{stdout}");

    let (code, stdout, _) =
        run_cli(&config, &["doctor"], &[("LOOPGATE_SERVER__API_TOKEN_ENV", "LOOPGATE_DOCTOR_TOKEN")]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  server.api_token_env"), "{stdout}");
    assert!(stdout.contains("fix: export LOOPGATE_DOCTOR_TOKEN="), "{stdout}");

    let (code, stdout, _) = run_cli(std::path::Path::new("/nonexistent/loopgate.toml"), &["doctor"], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("does not exist") && stdout.contains("fix:"), "{stdout}");
}

#[test]
fn sigterm_stops_serve_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = ServeProcess::start(&config);
    assert_eq!(server.terminate(), 0);
}

#[test]
fn pulse_list_and_answer_suggestions_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let three_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = run_cli(&config, args, &[]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        stdout
    };
    ok(&["signal", "remind me to water the ferns"]);
    ok(&[
        "signal",
        "--source",
        "telegram",
        "--actor",
        "ana",
        "--conversation",
        "ana",
        "--occurred-at",
        &three_hours_ago,
        "--untrusted",
        "can you send me the invoice?",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&["pulse", "--json"])).unwrap();
    assert_eq!(report["outcome"], "reflect", "{report}");
    assert_eq!(report["created"].as_array().unwrap().len(), 2);

    let listed = ok(&["suggestions", "list", "--json"]);
    let list: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(list.len(), 2, "{listed}");
    let question = list.iter().find(|s| s["class"] == "unanswered_question").unwrap()["id"].as_i64().unwrap();
    let reminder = list.iter().find(|s| s["class"] == "reminder").unwrap()["id"].as_i64().unwrap();
    let table = ok(&["suggestions", "list"]);
    assert!(table.contains("Reply to ana: “can you send me the invoice?”"), "{table}");
    assert!(table.contains("medium risk, waits for your approval before it runs"), "{table}");
    assert!(table.contains("low risk, runs when you act"), "{table}");

    let id = question.to_string();
    let out = ok(&["suggestions", "respond", &id, "edit", "--action", "Sent it this morning"]);
    assert_eq!(out.trim(), format!("suggestion {id}: edited"));
    let (code, _, stderr) = run_cli(&config, &["suggestions", "respond", &id, "act"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already decided: edited via cli by owner"), "{stderr}");
    let (code, _, stderr) = run_cli(&config, &["suggestions", "respond", &reminder.to_string(), "snooze"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("snooze needs --until or --for"), "{stderr}");
    let out = ok(&["suggestions", "respond", &reminder.to_string(), "snooze", "--for", "2h"]);
    assert!(out.contains("snoozed"), "{out}");
    let (code, _, stderr) = run_cli(&config, &["suggestions", "respond", "999", "act"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no suggestion 999"), "{stderr}");

    assert!(ok(&["stop"]).contains("paused"));
    assert!(ok(&["pulse"]).starts_with("deferred: paused by the kill switch"));
    assert_eq!(ok(&["resume"]).trim(), "resumed");
    assert!(ok(&["pulse"]).starts_with("reflect: run by hand"));
    assert!(ok(&["suggestions", "list", "--state", "edited"]).contains("edited"));

    // The edited reply waits for an approval; the shell can see and decide it.
    let pending = ok(&["approvals", "list", "--json"]);
    let approvals: Vec<serde_json::Value> = pending.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(approvals.len(), 1, "{pending}");
    assert_eq!(approvals[0]["action"]["text"], "Sent it this morning");
    let approval = approvals[0]["id"].as_i64().unwrap().to_string();
    assert!(ok(&["approvals", "list"]).contains("medium risk  message"), "table");
    let (code, _, stderr) = run_cli(&config, &["approvals", "decide", &approval, "perhaps"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("decision must be approve or deny"), "{stderr}");
    let out = ok(&["approvals", "decide", &approval, "deny"]);
    assert!(out.starts_with(&format!("approval {approval}: denied; task ")) && out.contains(": cancelled"), "{out}");
    let (code, _, stderr) = run_cli(&config, &["approvals", "decide", &approval, "approve"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already decided: denied via cli by owner"), "{stderr}");
    assert_eq!(ok(&["approvals", "list"]).trim(), "no approvals");
}

/// `loopgate … | head` closing the pipe early ends the command quietly, as Unix tools do.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    for n in 0..3 {
        assert_eq!(run_cli(&config, &["memory", "add", &format!("note {n}")], &[]).0, 0);
    }
    let mut child = Command::new(crate::helpers::binary())
        .arg("--config")
        .arg(&config)
        .args(["memory", "export", "--format", "markdown"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the command writes a line.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}
