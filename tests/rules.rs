//! Rules directories offline: validation reports every error at once, the default `rules/` passes,
//! `ferroboard rules check` exits non-zero on errors, and reloads keep the running chains when the
//! new ones are invalid.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferroboard::engine::{Engine, ScriptLimits, check_dir};
use tokio_util::sync::CancellationToken;

fn default_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn errors_of(dir: &Path) -> Vec<String> {
    match check_dir(dir) {
        Ok(summary) => panic!("expected errors, got {summary}"),
        Err(e) => e.0,
    }
}

fn chain(name: &str, root: bool) -> String {
    format!(
        "name = \"{name}\"\nroot = {root}\nentry = \"log\"\n[[nodes]]\nid = \"log\"\ntype = \"log\"\n"
    )
}

#[test]
fn default_rules_pass() {
    let summary = check_dir(&default_rules()).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.contains("Root Rule Chain"), "{summary}");
    assert!(summary.starts_with("ok: 1 chain(s)"), "{summary}");
}

const BROKEN: &str = r#"
name = "broken"
root = true
entry = "nowhere"

[[nodes]]
id = "switch"
type = "message_type_switch"

[[nodes]]
id = "mystery"
type = "teleport"

[[nodes]]
id = "missing_script"
type = "script_filter"
script = "absent.rhai"

[[nodes]]
id = "bad_script"
type = "script_transform"
script = "scripts/bad.rhai"

[[nodes]]
id = "attrs"
type = "save_attributes"
scope = "GALAXY_SCOPE"

[[nodes]]
id = "ts"
type = "save_timeseries"
use_server_tss = true

[[nodes]]
id = "switch"
type = "log"

[[relations]]
from = "switch"
to = "ghost"
type = "Post telemetry"

[[relations]]
from = "attrs"
to = "switch"
type = "Sucess"

[[relations]]
from = "attrs"
to = "ts"
type = "Success"

[[relations]]
from = "attrs"
to = "ts"
type = "success"
"#;

#[test]
fn every_error_is_reported_at_once() {
    let dir = dir_with(&[
        ("root.chain.toml", BROKEN),
        ("scripts/bad.rhai", "let x = 1;\nlet y = ;\n"),
    ]);
    let errors = errors_of(dir.path());
    let expect = [
        "entry node 'nowhere' is not defined",
        "node 'mystery': unknown type 'teleport'",
        "node 'missing_script' (script_filter): cannot read script file 'absent.rhai'",
        "scripts/bad.rhai:2:",
        "node 'attrs' (save_attributes): Invalid scope: GALAXY_SCOPE",
        "node 'ts' (save_timeseries): unknown field `use_server_tss`",
        "node id 'switch' is used twice",
        "unknown node 'ghost'",
        "'attrs' never emits 'Sucess'",
        "relation 'attrs' -> 'ts' (success): duplicate relation",
    ];
    for e in expect {
        assert!(
            errors.iter().any(|line| line.contains(e)),
            "missing '{e}' in:\n{}",
            errors.join("\n")
        );
    }
    assert_eq!(errors.len(), expect.len(), "{}", errors.join("\n"));
    assert!(
        errors.iter().all(|e| e.starts_with("root.chain.toml: ")),
        "{errors:?}"
    );
}

#[test]
fn exactly_one_root_chain() {
    let none = dir_with(&[("a.chain.toml", &chain("a", false))]);
    assert_eq!(
        errors_of(none.path()),
        ["no root chain: set `root = true` in one chain file"]
    );
    let two = dir_with(&[
        ("a.chain.toml", &chain("a", true)),
        ("b.chain.toml", &chain("b", true)),
    ]);
    assert_eq!(
        errors_of(two.path()),
        ["several root chains: a.chain.toml, b.chain.toml"]
    );
    let same = dir_with(&[
        ("a.chain.toml", &chain("x", true)),
        ("b.chain.toml", &chain("x", false)),
    ]);
    assert_eq!(
        errors_of(same.path()),
        ["b.chain.toml: chain name 'x' is also used by a.chain.toml"]
    );
    let ok = dir_with(&[
        ("a.chain.toml", &chain("a", true)),
        ("b.chain.toml", &chain("b", false)),
    ]);
    assert!(check_dir(ok.path()).unwrap().contains("2 chain(s)"));
}

#[test]
fn syntax_errors_name_file_and_line_and_other_files_are_still_checked() {
    let dir = dir_with(&[
        (
            "a.chain.toml",
            "name = \"a\"\nroot = true\nentry = = \"x\"\n",
        ),
        ("b.chain.toml", "name = \"b\"\nentry = \"x\"\n"),
    ]);
    let errors = errors_of(dir.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("a.chain.toml: ") && errors[0].contains("line 3"),
        "{errors:?}"
    );
    assert_eq!(errors[1], "b.chain.toml: entry node 'x' is not defined");
}

#[test]
fn empty_or_missing_directory_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    assert!(errors_of(empty.path())[0].starts_with("no *.chain.toml file"));
    let missing = empty.path().join("nope");
    assert!(errors_of(&missing)[0].starts_with("cannot read rules directory"));
}

#[test]
fn script_paths_stay_inside_the_directory() {
    let text = "name = \"a\"\nroot = true\nentry = \"f\"\n[[nodes]]\nid = \"f\"\ntype = \"script_filter\"\nscript = \"../x.rhai\"\n";
    let dir = dir_with(&[("a.chain.toml", text)]);
    assert!(errors_of(dir.path())[0].contains("must be relative to the rules directory"));
}

#[test]
fn rules_check_command_exits_non_zero_on_errors() {
    let bin = env!("CARGO_BIN_EXE_ferroboard");
    let ok = Command::new(bin)
        .args(["rules", "check"])
        .arg(default_rules())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dir = dir_with(&[("root.chain.toml", BROKEN)]);
    let bad = Command::new(bin)
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown type 'teleport'"));
}

#[test]
fn reload_keeps_the_running_chains_when_the_new_ones_are_invalid() {
    let dir = dir_with(&[("root.chain.toml", &chain("first", true))]);
    let engine = Engine::load(dir.path(), ScriptLimits::default()).unwrap();
    let generation = engine.subscribe();
    std::fs::write(dir.path().join("root.chain.toml"), BROKEN).unwrap();
    assert!(engine.reload(dir.path()).is_err());
    assert!(engine.summary().contains("'first'"));
    assert_eq!(*generation.borrow(), 0);
    std::fs::write(dir.path().join("root.chain.toml"), chain("second", true)).unwrap();
    engine.reload(dir.path()).unwrap();
    assert!(engine.summary().contains("'second'"));
    assert_eq!(*generation.borrow(), 1);
}

#[tokio::test]
async fn watch_reloads_on_change() {
    let dir = dir_with(&[("root.chain.toml", &chain("first", true))]);
    let engine = Arc::new(Engine::load(dir.path(), ScriptLimits::default()).unwrap());
    let mut generation = engine.subscribe();
    let cancel = CancellationToken::new();
    let task = engine.watch_every(
        dir.path().to_owned(),
        Duration::from_millis(20),
        cancel.clone(),
    );
    // A file written after the watcher took its first look: retry the write until it is seen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while *generation.borrow() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload within 10 s"
        );
        n += 1;
        std::fs::write(
            dir.path().join("root.chain.toml"),
            chain(&format!("second{n}"), true),
        )
        .unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(500), generation.changed()).await;
    }
    assert!(engine.summary().contains("'second"), "{}", engine.summary());
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

fn rules_test(dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferroboard"))
        .args(["rules", "test"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A root chain saving telemetry; every other type is filtered out.
const SAVING: &str = r#"
name = "saving"
root = true
entry = "switch"

[[nodes]]
id = "switch"
type = "message_type_switch"

[[nodes]]
id = "save"
type = "save_timeseries"

[[relations]]
from = "switch"
type = "Post telemetry"
to = "save"
"#;

#[test]
fn rules_test_passes_the_shipped_fixtures() {
    let (ok, stdout, stderr) = rules_test(&default_rules());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("ok   default.toml: "), "{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{stdout}");
    assert!(!summary.starts_with("0 passed"), "{stdout}");
}

#[test]
fn rules_test_reports_a_wrong_expectation() {
    let fixture = r#"
[[case]]
name = "saves the temperature"
type = "POST_TELEMETRY_REQUEST"
data = { temperature = 21 }
expect.timeseries = { temperature = 21 }

[[case]]
name = "keeps the double"
type = "POST_TELEMETRY_REQUEST"
data = { temperature = 21.5 }
expect.timeseries = { temperature = 21 }

[[case]]
name = "drops attributes"
type = "POST_ATTRIBUTES_REQUEST"
data = { fw = "1" }
expect.nothing_saved = true
"#;
    let dir = dir_with(&[("root.chain.toml", SAVING), ("tests/cases.toml", fixture)]);
    let (ok, stdout, _) = rules_test(dir.path());
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("ok   cases.toml: saves the temperature"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL cases.toml: keeps the double"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"actual:   {"temperature":21.5}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   cases.toml: drops attributes"),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
}

#[test]
fn rules_test_names_a_broken_fixture_file() {
    let dir = dir_with(&[
        ("root.chain.toml", SAVING),
        ("tests/a.toml", "[[case]]\nname = \"x\"\ntype = = 1\n"),
    ]);
    let (ok, stdout, stderr) = rules_test(dir.path());
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("tests/a.toml: "), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn rules_test_without_fixtures_fails() {
    let dir = dir_with(&[("root.chain.toml", SAVING)]);
    let (ok, stdout, stderr) = rules_test(dir.path());
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("no fixtures in"), "{stderr}");
    let empty = dir_with(&[
        ("root.chain.toml", SAVING),
        ("tests/empty.toml", "# nothing yet\n"),
    ]);
    assert!(rules_test(empty.path()).2.contains("no fixtures in"));
    // the fixture folder is never read as chains
    let nested = dir_with(&[
        ("root.chain.toml", SAVING),
        ("tests/x.chain.toml", "not a chain"),
    ]);
    assert!(check_dir(nested.path()).is_ok());
}

#[test]
fn rules_test_runs_scripts_with_the_configured_budget() {
    let chain = r#"
name = "busy"
root = true
entry = "switch"

[[nodes]]
id = "switch"
type = "message_type_switch"

[[nodes]]
id = "busy"
type = "script_transform"
script = "scripts/busy.rhai"

[[nodes]]
id = "save"
type = "save_timeseries"

[[relations]]
from = "switch"
type = "Post telemetry"
to = "busy"

[[relations]]
from = "busy"
type = "Success"
to = "save"
"#;
    let script = "let n = 0; for i in 0..2000 { n += i; } msg.sum = n; #{ msg: msg }";
    let fixture = r#"
[[case]]
name = "sums and saves"
type = "POST_TELEMETRY_REQUEST"
data = { temperature = 21 }
expect.timeseries = { temperature = 21, sum = 1999000 }
"#;
    let dir = dir_with(&[
        ("root.chain.toml", chain),
        ("scripts/busy.rhai", script),
        ("tests/cases.toml", fixture),
    ]);
    let (ok, stdout, stderr) = rules_test(dir.path());
    assert!(ok, "the default budget suffices\n{stdout}\n{stderr}");

    // The same fixture under a server configured with a tiny budget: the script fails, nothing is saved.
    let config = dir.path().join("ferroboard.toml");
    std::fs::write(&config, "[engine]\nscript_max_operations = 100\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferroboard"))
        .args(["rules", "test"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env_remove("FERROBOARD_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL cases.toml: sums and saves"),
        "{stdout}"
    );
}

/// `rules dry-run` runs recorded messages through the root chain and prints each one's path and
/// what it would have saved or answered; a messages file that is not JSON is an error.
#[test]
fn rules_dry_run_command_prints_paths_and_recorded_effects() {
    let bin = env!("CARGO_BIN_EXE_ferroboard");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("messages.json");
    std::fs::write(
        &file,
        r#"[{"type": "POST_TELEMETRY_REQUEST", "data": {"temperature": 21.5}},
            {"type": "TO_SERVER_RPC_REQUEST", "data": {"method": "getCurrentTime", "params": {}},
             "metadata": {"requestId": "1", "sessionId": "1", "serviceId": "x"}}]"#,
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .args(["rules", "dry-run"])
        .arg(default_rules())
        .arg("--messages")
        .arg(&file)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let nodes: Vec<&str> = results[0]["path"]
        .as_array()
        .expect("path")
        .iter()
        .filter_map(|s| s["node"].as_str())
        .collect();
    assert_eq!(nodes, ["message_type_switch", "save_timeseries"]);
    assert_eq!(results[0]["timeseries"][0]["key"], "temperature");
    let reply: serde_json::Value =
        serde_json::from_str(results[1]["rpcReplies"][0].to_string().as_str()).expect("reply");
    assert!(reply.get("time").is_some(), "{results}");
    std::fs::write(&file, "not json").expect("write");
    let bad = std::process::Command::new(bin)
        .args(["rules", "dry-run"])
        .arg(default_rules())
        .arg("--messages")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!bad.status.success());
}
