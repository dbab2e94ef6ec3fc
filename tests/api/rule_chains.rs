//! Rule chains over REST: list, get, metadata in ThingsBoard's JSON; a save written back to the
//! rules directory and taking effect on the next message; an invalid save refused with every
//! error and the running chain kept; a stale version refused; the test-script endpoint; dry runs
//! of a candidate over recorded messages with nothing saved; debug capture read as events.

use serde_json::{Value, json};

use crate::common::{TestApp, eventually, raw_mqtt};
use crate::support::{Api, TELEMETRY};

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const C_TO_F: &str =
    "msg.tempF = msg.tempC * 1.8 + 32;\n#{ msg: msg, metadata: metadata, msgType: msgType }\n";

async fn root_chain(api: &Api) -> Value {
    let page = api.get("/api/ruleChains?pageSize=10&page=0").await.ok();
    assert_eq!(page["totalElements"], 1, "{page}");
    let chain = page["data"][0].clone();
    assert_eq!(chain["name"], "Root Rule Chain");
    assert_eq!(chain["root"], true);
    assert_eq!(chain["id"]["entityType"], "RULE_CHAIN");
    chain
}

fn index_of(meta: &Value, id: &str) -> usize {
    meta["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .position(|n| n["additionalInfo"]["ferroboardId"] == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

/// The metadata with a C-to-F transform between the type switch and the time-series save.
fn with_transform(meta: &Value) -> Value {
    let mut meta = meta.clone();
    let switch = index_of(&meta, "message_type_switch");
    let save = index_of(&meta, "save_timeseries");
    let nodes = meta["nodes"].as_array_mut().expect("nodes");
    nodes.push(json!({
        "type": "org.thingsboard.rule.engine.transform.TbTransformMsgNode",
        "name": "C to F",
        "configuration": {"scriptLang": "RHAI", "rhaiScript": C_TO_F},
    }));
    let transform = nodes.len() - 1;
    let connections = meta["connections"].as_array_mut().expect("connections");
    connections.retain(|c| !(c["fromIndex"] == switch && c["type"] == "Post telemetry"));
    connections.push(json!({"fromIndex": switch, "toIndex": transform, "type": "Post telemetry"}));
    connections.push(json!({"fromIndex": transform, "toIndex": save, "type": "Success"}));
    meta
}

async fn publish(app: &TestApp, token: &str, payload: &str) {
    let mut mqtt = raw_mqtt::session(app, token).await;
    raw_mqtt::publish_qos1(&mut mqtt, "v1/devices/me/telemetry", 1, payload).await;
    raw_mqtt::puback(&mut mqtt, 1).await;
}

async fn latest(api: &Api, device: &str, key: &str) -> Value {
    let body = api
        .get(&format!(
            "{TELEMETRY}/{device}/values/timeseries?keys={key}"
        ))
        .await
        .ok();
    body[key][0]["value"].clone()
}

async fn chains_and_saves(app: &TestApp) {
    let api = Api::tenant(app).await;
    let chain = root_chain(&api).await;
    let id = chain["id"]["id"].as_str().expect("id").to_owned();
    assert_eq!(api.get(&format!("/api/ruleChain/{id}")).await.ok(), chain);
    let meta = api.get(&format!("/api/ruleChain/{id}/metadata")).await.ok();
    let switch = &meta["nodes"][meta["firstNodeIndex"].as_u64().expect("index") as usize];
    assert_eq!(
        switch["type"],
        "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode"
    );
    assert_eq!(switch["id"], chain["firstRuleNodeId"]);
    let filter = &meta["nodes"][index_of(&meta, "is_get_current_time")];
    assert_eq!(
        filter["configuration"]["scriptFile"],
        "scripts/is_get_current_time.rhai"
    );
    assert!(
        filter["configuration"]["rhaiScript"]
            .as_str()
            .is_some_and(|s| s.contains("getCurrentTime"))
    );

    // An invalid save: every problem listed, nothing written, the running chain kept.
    let mut bad = with_transform(&meta);
    let save = index_of(&bad, "save_timeseries");
    bad["nodes"][save]["type"] = json!("no.such.Node");
    let last = bad["nodes"].as_array().expect("nodes").len() - 1;
    bad["nodes"][last]["configuration"]["rhaiScript"] = json!("msg. = ;");
    let message = api
        .post("/api/ruleChain/metadata", bad)
        .await
        .error(400, 31);
    assert!(message.contains("no.such.Node"), "{message}");
    assert!(
        message.contains("c_to_f"),
        "the script error is listed too: {message}"
    );
    assert_eq!(
        api.get(&format!("/api/ruleChain/{id}/metadata")).await.ok(),
        meta
    );
    let file = app.dir.path().join("rules/root.chain.toml");
    assert!(
        !std::fs::read_to_string(&file)
            .expect("chain file")
            .contains("c_to_f")
    );

    // A stale version is refused.
    let mut stale = with_transform(&meta);
    stale["version"] = json!(1);
    api.post("/api/ruleChain/metadata", stale)
        .await
        .error(409, 35);

    // A valid save: written as TOML + .rhai, and the next message takes the new path.
    let saved = api
        .post("/api/ruleChain/metadata", with_transform(&meta))
        .await
        .ok();
    assert_ne!(saved["version"], meta["version"]);
    let text = std::fs::read_to_string(&file).expect("chain file");
    assert!(
        text.contains("script_transform") && text.contains("scripts/root/c_to_f.rhai"),
        "{text}"
    );
    let script = std::fs::read_to_string(app.dir.path().join("rules/scripts/root/c_to_f.rhai"))
        .expect("script");
    assert_eq!(script, C_TO_F);
    let again = api.get(&format!("/api/ruleChain/{id}")).await.ok();
    assert_eq!(again["id"], chain["id"], "the id stays");
    let (device, _) = api.create_device(json!({"name": "rc-1"})).await;
    let token = api.token_of(&device).await;
    publish(app, &token, r#"{"tempC": 25}"#).await;
    assert_eq!(latest(&api, &device, "tempF").await, "77.0");

    // Dry run of a candidate over the recorded message: the path and the write, nothing saved.
    let recorded = api
        .get(&format!("/api/ruleChain/dryRun/messages?deviceId={device}"))
        .await
        .ok();
    let telemetry = |list: &Value| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|m| {
                m["type"] == "POST_TELEMETRY_REQUEST"
                    || m["input"]["type"] == "POST_TELEMETRY_REQUEST"
            })
            .cloned()
            .unwrap_or_else(|| panic!("no telemetry message in {list}"))
    };
    assert_eq!(telemetry(&recorded)["data"], json!({"tempC": 25}));
    let current = api.get(&format!("/api/ruleChain/{id}/metadata")).await.ok();
    let mut candidate = current.clone();
    let t = index_of(&candidate, "c_to_f");
    candidate["nodes"][t]["configuration"]["rhaiScript"] =
        json!("msg.tempK = msg.tempC + 273.15;\n#{ msg: msg }\n");
    let run = api
        .post(
            "/api/ruleChain/dryRun",
            json!({"deviceId": device, "metadata": candidate}),
        )
        .await
        .ok();
    let result = &telemetry(&run["results"]);
    let nodes: Vec<&str> = result["path"]
        .as_array()
        .expect("path")
        .iter()
        .filter_map(|s| s["node"].as_str())
        .collect();
    assert_eq!(
        nodes,
        ["message_type_switch", "c_to_f", "save_timeseries"],
        "{run}"
    );
    let keys: Vec<&str> = result["timeseries"]
        .as_array()
        .expect("ts")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert!(keys.contains(&"tempK"), "{run}");
    assert_eq!(
        latest(&api, &device, "tempK").await,
        Value::Null,
        "a dry run saves nothing"
    );
    let explicit = api
        .post(
            "/api/ruleChain/dryRun",
            json!({"deviceId": device, "messages": [{"type": "POST_ATTRIBUTES_REQUEST", "data": {"fw": "1"}}]}),
        )
        .await
        .ok();
    assert_eq!(
        explicit["results"][0]["attributes"][0]["key"], "fw",
        "{explicit}"
    );

    // Debug capture on the save node: its IN and OUT events.
    let mut debug = current.clone();
    let s = index_of(&debug, "save_timeseries");
    debug["nodes"][s]["debugSettings"] =
        json!({"failuresEnabled": false, "allEnabled": true, "allEnabledUntil": 0});
    let saved = api.post("/api/ruleChain/metadata", debug).await.ok();
    let node_id = saved["nodes"][s]["id"]["id"]
        .as_str()
        .expect("node id")
        .to_owned();
    let until = saved["nodes"][s]["debugSettings"]["allEnabledUntil"]
        .as_i64()
        .expect("until");
    assert!(
        until <= crate::support::now_ms() + 15 * 60_000 + 1000,
        "capped to 15 minutes"
    );
    publish(app, &token, r#"{"tempC": 30}"#).await;
    let events = eventually("debug events", WAIT, || async {
        let page = api
            .get(&format!(
                "/api/events/RULE_NODE/{node_id}/DEBUG_RULE_NODE?pageSize=10&page=0"
            ))
            .await
            .ok();
        (page["totalElements"].as_i64() >= Some(2)).then_some(page)
    })
    .await;
    let types: Vec<&str> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["body"]["eventType"].as_str())
        .collect();
    assert!(types.contains(&"IN") && types.contains(&"OUT"), "{events}");
    let debug_in = api
        .get(&format!("/api/ruleNode/{node_id}/debugIn"))
        .await
        .ok();
    assert_eq!(debug_in["msgType"], "POST_TELEMETRY_REQUEST");
}

async fn test_script(app: &TestApp) {
    let api = Api::tenant(app).await;
    let run = |script: &str, kind: &str| {
        json!({"script": script, "scriptType": kind, "argNames": ["msg", "metadata", "msgType"],
               "msg": "{\"temperature\": 25}", "metadata": {"deviceName": "d"}, "msgType": "POST_TELEMETRY_REQUEST"})
    };
    let ok = api
        .post(
            "/api/ruleChain/testScript",
            run("msg.temperature > 20", "filter"),
        )
        .await
        .ok();
    assert_eq!(ok, json!({"output": "true", "error": ""}));
    let update = api
        .post(
            "/api/ruleChain/testScript",
            run(
                "msg.f = 1; #{msg: msg, metadata: metadata, msgType: msgType}",
                "update",
            ),
        )
        .await
        .ok();
    let output: Value =
        serde_json::from_str(update["output"].as_str().expect("output")).expect("JSON output");
    assert_eq!(output["msg"], json!({"temperature": 25, "f": 1}));
    let bad = api
        .post("/api/ruleChain/testScript", run("msg. = ;", "filter"))
        .await
        .ok();
    assert_eq!(bad["output"], "");
    assert!(
        bad["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{bad}"
    );
    let endless = api
        .post("/api/ruleChain/testScript", run("loop {}", "json"))
        .await
        .ok();
    assert!(
        endless["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the budget ends it: {endless}"
    );
}

/// `GET /api/ruleChains/status`: how the running chains came to run, the last save over REST,
/// and a reload of an invalid directory reported while the chains it did not replace keep running.
async fn reload_status(app: &TestApp) {
    let api = Api::tenant(app).await;
    let status = api.get("/api/ruleChains/status").await.ok();
    assert_eq!(status["activatedBy"], "loaded", "{status}");
    assert_eq!(status["generation"], 0, "{status}");
    assert_eq!(status["lastSavedAt"], Value::Null, "{status}");
    assert_eq!(status["lastError"], Value::Null, "{status}");
    assert!(
        status["activatedAt"].as_i64().is_some_and(|t| t > 0),
        "{status}"
    );

    let chain = root_chain(&api).await;
    let id = chain["id"]["id"].as_str().expect("id");
    let meta = api.get(&format!("/api/ruleChain/{id}/metadata")).await.ok();
    api.post("/api/ruleChain/metadata", meta).await.ok();
    let saved = api.get("/api/ruleChains/status").await.ok();
    assert!(saved["lastSavedAt"].as_i64().is_some(), "{saved}");
    assert!(
        saved["generation"].as_u64().is_some_and(|g| g >= 1),
        "{saved}"
    );

    std::fs::write(
        app.dir.path().join("rules/broken.chain.toml"),
        "name = \"Broken\"\nentry = \"nowhere\"\n",
    )
    .expect("write");
    let failed = eventually("the failed reload in the status", WAIT, || async {
        let s = api.get("/api/ruleChains/status").await.ok();
        (!s["lastError"].is_null()).then_some(s)
    })
    .await;
    let errors = failed["lastError"]["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("broken.chain.toml"))),
        "{failed}"
    );
    assert_eq!(failed["lastSavedAt"], saved["lastSavedAt"], "{failed}");
    assert_eq!(
        failed["summary"], saved["summary"],
        "the running chains stay"
    );
    let anonymous = reqwest::get(format!("{}/api/ruleChains/status", app.http))
        .await
        .expect("status");
    assert_eq!(anonymous.status(), 401);
}

crate::both_backends!(chains_and_saves, test_script, reload_status);
