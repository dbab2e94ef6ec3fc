//! Routing tests: chains loaded from temporary directories, writes observed through a fake service.

use std::path::Path;

use super::*;
use crate::domain::{AttributeScope, KvValue};
use crate::engine::loader::load_dir;
use crate::engine::testing::{FakeServices, Saved, msg, sandbox};

const SWITCH: &str = r#"
name = "test"
root = true
entry = "switch"

[[nodes]]
id = "switch"
type = "message_type_switch"
"#;

fn load(chain: &str, scripts: &[(&str, &str)]) -> Chains {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.chain.toml"), chain).unwrap();
    for (name, text) in scripts {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    load_dir(dir.path(), &sandbox()).unwrap_or_else(|e| panic!("chain does not load:\n{e}"))
}

async fn run(chains: &Chains, m: Msg, services: &FakeServices) -> RunStats {
    match chains.root().run(m, services, chains.dropped()).await {
        Ok(stats) => stats,
        Err(e) => panic!("{e}"),
    }
}

fn telemetry(data: &str) -> Msg {
    msg("POST_TELEMETRY_REQUEST", data)
}

fn saved_keys(services: &FakeServices) -> Vec<String> {
    services
        .saved()
        .into_iter()
        .flat_map(|s| match s {
            Saved::Timeseries(_, points) => points.into_iter().map(|p| p.key).collect::<Vec<_>>(),
            Saved::Attributes(_, _, kvs) => kvs.into_iter().map(|kv| kv.key).collect(),
        })
        .collect()
}

#[tokio::test]
async fn default_rules_route_like_thingsboard() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let chains = load_dir(&dir, &sandbox()).unwrap_or_else(|e| panic!("{e}"));
    let services = FakeServices::default();

    let stats = run(&chains, telemetry(r#"{"t":25}"#), &services).await;
    assert_eq!(
        stats,
        RunStats {
            runs: 2,
            dropped: 0
        },
        "switch + save; a leaf's Success is no drop"
    );
    let stats = run(
        &chains,
        msg("POST_ATTRIBUTES_REQUEST", r#"{"fw":"1"}"#),
        &services,
    )
    .await;
    assert_eq!(stats.runs, 2);
    match &services.saved()[..] {
        [
            Saved::Timeseries(_, ts),
            Saved::Attributes(_, AttributeScope::Client, kvs),
        ] => {
            assert_eq!(ts[0].value, KvValue::Long(25));
            assert_eq!(kvs[0].key, "fw");
        }
        other => panic!("unexpected writes {other:?}"),
    }
    for (t, runs, dropped) in [
        // switch -> "is getCurrentTime" filter (False) -> log
        ("TO_SERVER_RPC_REQUEST", 3, 0),
        ("SOMETHING_CUSTOM", 2, 0),
        ("CONNECT_EVENT", 1, 1),
    ] {
        let stats = run(&chains, msg(t, "{}"), &services).await;
        assert_eq!(stats, RunStats { runs, dropped }, "{t}");
    }
    assert_eq!(services.saved().len(), 2);
}

#[tokio::test]
async fn relation_names_match_case_insensitively_and_fan_out_to_every_connection() {
    let chain = format!(
        r#"{SWITCH}
[[nodes]]
id = "a"
type = "save_timeseries"
[[nodes]]
id = "b"
type = "save_timeseries"
[[relations]]
from = "switch"
to = "a"
type = "post TELEMETRY"
[[relations]]
from = "switch"
to = "b"
type = "Post Telemetry"
"#
    );
    let chains = load(&chain, &[]);
    let services = FakeServices::default();
    let stats = run(&chains, telemetry(r#"{"x":1}"#), &services).await;
    assert_eq!(
        stats,
        RunStats {
            runs: 3,
            dropped: 0
        }
    );
    assert_eq!(saved_keys(&services), ["x", "x"]);
}

#[tokio::test]
async fn switch_names_route_case_insensitively_including_non_ascii() {
    let chain = r#"
name = "t"
root = true
entry = "sw"
[[nodes]]
id = "sw"
type = "script_switch"
script = "sw.rhai"
[[nodes]]
id = "save"
type = "save_timeseries"
[[relations]]
from = "sw"
to = "save"
type = "äRGER"
"#;
    let chains = load(chain, &[("sw.rhai", r#"["Ärger", "unconnected"]"#)]);
    let services = FakeServices::default();
    let stats = run(&chains, telemetry(r#"{"x":1}"#), &services).await;
    assert_eq!(
        stats,
        RunStats {
            runs: 2,
            dropped: 0
        },
        "\"unconnected\" is no drop: the message went elsewhere"
    );
    assert_eq!(saved_keys(&services), ["x"]);
}

#[tokio::test]
async fn transform_array_fans_out_to_several_messages() {
    let chain = r#"
name = "t"
root = true
entry = "split"
[[nodes]]
id = "split"
type = "script_transform"
script = "split.rhai"
[[nodes]]
id = "save"
type = "save_timeseries"
[[relations]]
from = "split"
to = "save"
type = "Success"
"#;
    let script =
        "let out = []; for k in msg.keys() { let m = #{}; m[k] = 1; out.push(#{msg: m}); } out";
    let chains = load(chain, &[("split.rhai", script)]);
    let services = FakeServices::default();
    let stats = run(&chains, telemetry(r#"{"a":0,"b":0,"c":0}"#), &services).await;
    assert_eq!(stats.runs, 4);
    let mut keys = saved_keys(&services);
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
}

#[tokio::test]
async fn budget_hit_routes_failure_with_error_metadata() {
    let chain = r#"
name = "t"
root = true
entry = "spin"
[[nodes]]
id = "spin"
type = "script_transform"
script = "spin.rhai"
[[nodes]]
id = "report"
type = "script_transform"
script = "report.rhai"
[[nodes]]
id = "save"
type = "save_timeseries"
[[relations]]
from = "spin"
to = "report"
type = "failure"
[[relations]]
from = "report"
to = "save"
type = "Success"
"#;
    let report = r#"#{msg: #{error: metadata.error}}"#;
    let chains = load(chain, &[("spin.rhai", "loop {}"), ("report.rhai", report)]);
    let services = FakeServices::default();
    run(&chains, telemetry("{}"), &services).await;
    match &services.saved()[..] {
        [Saved::Timeseries(_, points)] => {
            let KvValue::Str(error) = &points[0].value else {
                panic!("{points:?}")
            };
            assert!(error.contains("operations budget"), "{error}");
        }
        other => panic!("unexpected writes {other:?}"),
    }
}

#[tokio::test]
async fn unconnected_failure_is_dropped_and_counted() {
    let chain = format!(
        r#"{SWITCH}
[[nodes]]
id = "save"
type = "save_timeseries"
[[relations]]
from = "switch"
to = "save"
type = "Post attributes"
"#
    );
    let chains = load(&chain, &[]);
    let services = FakeServices::default();
    let stats = run(
        &chains,
        msg("POST_ATTRIBUTES_REQUEST", r#"{"a":1}"#),
        &services,
    )
    .await;
    assert_eq!(
        stats,
        RunStats {
            runs: 2,
            dropped: 1
        }
    );
    assert!(services.saved().is_empty());
}

#[tokio::test]
async fn cycles_stop_at_the_hop_limit() {
    let chain = r#"
name = "t"
root = true
entry = "again"
[[nodes]]
id = "again"
type = "script_transform"
script = "same.rhai"
[[relations]]
from = "again"
to = "again"
type = "Success"
"#;
    let chains = load(chain, &[("same.rhai", "#{}")]);
    let stats = run(&chains, telemetry("{}"), &FakeServices::default()).await;
    assert_eq!(
        stats,
        RunStats {
            runs: MAX_HOPS,
            dropped: 1
        }
    );
}

#[tokio::test]
async fn fan_out_cycles_stop_at_the_run_limit() {
    let chain = r#"
name = "t"
root = true
entry = "twice"
[[nodes]]
id = "twice"
type = "script_switch"
script = "twice.rhai"
[[relations]]
from = "twice"
to = "twice"
type = "a"
[[relations]]
from = "twice"
to = "twice"
type = "b"
"#;
    let chains = load(chain, &[("twice.rhai", r#"["a", "b"]"#)]);
    let stats = run(&chains, telemetry("{}"), &FakeServices::default()).await;
    assert_eq!(stats.runs, MAX_RUNS);
    assert!(stats.dropped > 0);
}

#[tokio::test]
async fn storage_errors_end_the_message_with_an_error() {
    let chain = format!(
        r#"{SWITCH}
[[nodes]]
id = "save"
type = "save_timeseries"
[[relations]]
from = "switch"
to = "save"
type = "Post telemetry"
"#
    );
    let chains = load(&chain, &[]);
    let out = chains
        .root()
        .run(
            telemetry(r#"{"a":1}"#),
            &FakeServices::failing(),
            chains.dropped(),
        )
        .await;
    assert!(matches!(out, Err(EngineError::Storage(_))));
}

#[tokio::test]
async fn filter_routes_true_and_false() {
    let chain = r#"
name = "t"
root = true
entry = "hot"
[[nodes]]
id = "hot"
type = "script_filter"
script = "hot.rhai"
[[nodes]]
id = "mark"
type = "script_transform"
script = "mark.rhai"
[[nodes]]
id = "save"
type = "save_timeseries"
[[relations]]
from = "hot"
to = "save"
type = "True"
[[relations]]
from = "hot"
to = "mark"
type = "False"
[[relations]]
from = "mark"
to = "save"
type = "Success"
"#;
    let scripts = [
        ("hot.rhai", "msg.t > 20"),
        ("mark.rhai", "#{msg: #{cold: msg.t}}"),
    ];
    let chains = load(chain, &scripts);
    let services = FakeServices::default();
    run(&chains, telemetry(r#"{"t":25}"#), &services).await;
    run(&chains, telemetry(r#"{"t":5}"#), &services).await;
    assert_eq!(saved_keys(&services), ["t", "cold"]);
}

/// Services that accept every write at once (no storage), for measuring the engine alone.
struct NullServices;

impl EngineServices for NullServices {
    fn typing(&self) -> crate::domain::kv::Typing {
        crate::domain::kv::Typing::default()
    }

    async fn save_timeseries(
        &self,
        _: uuid::Uuid,
        _: Vec<crate::domain::TsKv>,
    ) -> Result<(), crate::domain::StorageError> {
        Ok(())
    }

    async fn save_attributes(
        &self,
        _: uuid::Uuid,
        _: AttributeScope,
        _: Vec<crate::domain::Kv>,
        _: i64,
    ) -> Result<(), crate::domain::StorageError> {
        Ok(())
    }
}

/// `cargo test --release --lib engine::chain::tests::cost -- --ignored --nocapture`
#[tokio::test]
#[ignore = "measurement, not a test"]
async fn cost_of_the_default_chain_per_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let chains = load_dir(&dir, &sandbox()).unwrap_or_else(|e| panic!("{e}"));
    let template = telemetry(r#"{"temperature":25.5,"humidity":60,"active":true,"label":"a"}"#);
    let n = 200_000;
    let started = std::time::Instant::now();
    for _ in 0..n {
        chains
            .root()
            .run(template.clone(), &NullServices, chains.dropped())
            .await
            .unwrap();
    }
    let per = started.elapsed() / n;
    println!(
        "default chain, telemetry with 4 keys, no storage: {per:?} per message (clone included)"
    );
}
