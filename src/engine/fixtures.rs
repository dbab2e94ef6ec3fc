//! Rule fixtures (`ferroboard rules test`): the cases in `DIR/tests/*.toml` run offline through the
//! root chain with recording services, and what the chain saved, sent and logged is compared with
//! each case's expectations. The format is described in rules/README.md ("Testing rules").

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::nodes::EngineServices;
use super::{Engine, RulesErrors, ScriptLimits};
use crate::bus::RpcRequest;
use crate::domain::StorageError;
use crate::domain::kv::Typing;
use crate::domain::{
    AttributeScope, DeviceId, EntityId, Kv, KvValue, Msg, MsgType, TenantId, TsKv,
};

/// The folder of a rules directory that holds the fixture files.
pub const FIXTURE_DIR: &str = "tests";

/// The originator of every case: one fixed device of one fixed tenant.
const DEVICE: Uuid = Uuid::from_u128(0x0f1e_2d3c_4b5a_4978_8695_a4b3_c2d1_e0f0);
const TENANT: Uuid = Uuid::from_u128(0x1f1e_2d3c_4b5a_4978_8695_a4b3_c2d1_e0f0);

/// Metadata a device RPC gets from the MQTT transport, needed by `rpc_call_reply`; added to a
/// `TO_SERVER_RPC_REQUEST` case unless it gives them itself.
const RPC_METADATA: [(&str, &str); 3] = [
    ("requestId", "1"),
    ("sessionId", "1"),
    ("serviceId", "fixtures"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(rename = "type")]
    msg_type: String,
    #[serde(default)]
    data: Option<toml::Value>,
    #[serde(default)]
    data_json: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    timeseries: Option<toml::Table>,
    attributes: Option<ExpectAttributes>,
    rpc_requests: Option<Vec<ExpectRpcRequest>>,
    rpc_replies: Option<Vec<toml::Value>>,
    rpc_reply_keys: Option<Vec<String>>,
    logs: Option<Vec<String>>,
    #[serde(default)]
    nothing_saved: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct ExpectAttributes {
    CLIENT_SCOPE: Option<toml::Table>,
    SERVER_SCOPE: Option<toml::Table>,
    SHARED_SCOPE: Option<toml::Table>,
}

impl ExpectAttributes {
    fn scopes(&self) -> [(AttributeScope, Option<&toml::Table>); 3] {
        [
            (AttributeScope::Client, self.CLIENT_SCOPE.as_ref()),
            (AttributeScope::Server, self.SERVER_SCOPE.as_ref()),
            (AttributeScope::Shared, self.SHARED_SCOPE.as_ref()),
        ]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectRpcRequest {
    method: String,
    #[serde(default)]
    params: Option<toml::Value>,
    #[serde(default)]
    oneway: Option<bool>,
    #[serde(default)]
    persistent: Option<bool>,
}

/// The outcome of one case; it passed when `failures` is empty.
#[derive(Debug)]
pub struct CaseResult {
    /// The fixture file's name inside `tests/`.
    pub file: String,
    pub name: String,
    /// One entry per unmet expectation: what, expected, actual.
    pub failures: Vec<Mismatch>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One unmet expectation.
#[derive(Debug, PartialEq)]
pub struct Mismatch {
    pub what: String,
    pub expected: String,
    pub actual: String,
}

/// `ok   file: name`, or `FAIL file: name` followed by the indented mismatches.
impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = if self.passed() { "ok  " } else { "FAIL" };
        write!(f, "{tag} {}: {}", self.file, self.name)?;
        for m in &self.failures {
            write!(
                f,
                "\n    {}\n      expected: {}\n      actual:   {}",
                m.what, m.expected, m.actual
            )?;
        }
        Ok(())
    }
}

/// Every case of a rules directory's fixtures, in file and case order.
#[derive(Debug, Default)]
pub struct Report {
    pub cases: Vec<CaseResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Loads `dir`, reads every fixture file of `dir/tests` and runs its cases. Load errors, fixture
/// errors (naming the file, and the line or case) and a directory without any case are `Err`.
pub async fn run_fixtures(dir: &Path, limits: ScriptLimits) -> Result<Report, RulesErrors> {
    let engine = Engine::load(dir, limits)?;
    let files = read_fixtures(&dir.join(FIXTURE_DIR))?;
    if files.iter().all(|(_, cases)| cases.is_empty()) {
        return Err(RulesErrors(vec![format!(
            "no fixtures in {}: add *.toml files with [[case]] entries",
            dir.join(FIXTURE_DIR).display()
        )]));
    }
    let mut report = Report::default();
    for (file, cases) in files {
        for case in cases {
            let failures = run_case(&engine, &case).await;
            report.cases.push(CaseResult {
                file: file.clone(),
                name: case.name,
                failures,
            });
        }
    }
    Ok(report)
}

/// A case ready to run: its message and expectations.
struct Prepared {
    name: String,
    msg_type: MsgType,
    data: Value,
    metadata: BTreeMap<String, String>,
    expect: Expect,
}

/// Every `*.toml` in the fixture folder, sorted, parsed and checked; all problems at once.
fn read_fixtures(folder: &Path) -> Result<Vec<(String, Vec<Prepared>)>, RulesErrors> {
    let mut names: Vec<String> = match std::fs::read_dir(folder) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.ends_with(".toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(RulesErrors(vec![format!(
                "cannot read {}: {e}",
                folder.display()
            )]));
        }
    };
    names.sort();
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for name in names {
        let parsed = std::fs::read_to_string(folder.join(&name))
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str::<FixtureFile>(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(file) => {
                let before = errors.len();
                let cases = prepare_file(&name, file, &mut errors);
                if errors.len() == before {
                    files.push((name, cases));
                }
            }
            Err(e) => errors.push(format!("{FIXTURE_DIR}/{name}: {}", e.trim_end())),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(RulesErrors(errors))
    }
}

fn prepare_file(file: &str, raw: FixtureFile, errors: &mut Vec<String>) -> Vec<Prepared> {
    let mut seen = HashSet::new();
    let mut cases = Vec::new();
    for case in raw.case {
        let at = format!("{FIXTURE_DIR}/{file}: case '{}'", case.name);
        if !seen.insert(case.name.clone()) {
            errors.push(format!("{at}: the name is used twice"));
            continue;
        }
        match prepare(case) {
            Ok(p) => cases.push(p),
            Err(e) => errors.push(format!("{at}: {e}")),
        }
    }
    cases
}

fn prepare(case: Case) -> Result<Prepared, String> {
    let data = match (&case.data, &case.data_json) {
        (Some(_), Some(_)) => return Err("give `data` or `data_json`, not both".to_owned()),
        (Some(data), None) => toml_to_json(data)?,
        (None, Some(text)) => {
            serde_json::from_str(text).map_err(|e| format!("data_json is not JSON: {e}"))?
        }
        (None, None) => Value::Object(Map::new()),
    };
    if case.msg_type.trim().is_empty() {
        return Err("`type` is empty".to_owned());
    }
    let msg_type = MsgType::parse(&case.msg_type);
    let mut metadata = case.metadata;
    if msg_type == MsgType::ToServerRpcRequest {
        for (k, v) in RPC_METADATA {
            metadata.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    // Expected values must convert too; a bad one is a fixture error, not a failing case.
    let e = &case.expect;
    for table in e.timeseries.iter().chain(
        e.attributes
            .iter()
            .flat_map(|a| a.scopes().into_iter().filter_map(|(_, t)| t)),
    ) {
        for (key, value) in table {
            expected_kv(key, value)?;
        }
    }
    for v in e.rpc_replies.iter().flatten() {
        toml_to_json(v)?;
    }
    for r in e.rpc_requests.iter().flatten() {
        r.params.as_ref().map(toml_to_json).transpose()?;
    }
    Ok(Prepared {
        name: case.name,
        msg_type,
        data,
        metadata,
        expect: case.expect,
    })
}

/// TOML to JSON: tables become objects, datetimes strings; NaN and infinities are refused.
fn toml_to_json(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} has no JSON form"))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// An expected value, typed as the engine types a device's JSON, except that strings stay strings
/// (a value saved from `"21"` is the number 21, and is expected as `21`).
fn expected_kv(key: &str, value: &toml::Value) -> Result<KvValue, String> {
    let typing = Typing {
        type_cast_strings: false,
        ..Typing::default()
    };
    KvValue::from_json(key, &toml_to_json(value)?, typing)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("expected value of '{key}' is null"))
}

/// One node run of a message: the chain, the node and the relations it left on.
#[derive(Debug)]
pub(super) struct Step {
    pub chain: String,
    pub node: String,
    pub relations: Vec<String>,
}

/// Everything the chain did with one message.
#[derive(Default)]
pub(super) struct Recorded {
    pub timeseries: Vec<TsKv>,
    pub attributes: Vec<(AttributeScope, Kv)>,
    pub rpc_requests: Vec<RpcRequest>,
    pub rpc_replies: Vec<String>,
    pub logs: Vec<String>,
    pub path: Vec<Step>,
}

/// Offline services: saves and RPCs are recorded and succeed (nothing is written or sent); the
/// typing is the server default. Used by the fixtures and by dry runs.
#[derive(Default)]
pub(super) struct Recorder(Mutex<Recorded>);

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn into_inner(self) -> Recorded {
        self.0.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EngineServices for Recorder {
    fn typing(&self) -> Typing {
        Typing::default()
    }

    async fn save_timeseries(&self, _entity: Uuid, points: Vec<TsKv>) -> Result<(), StorageError> {
        self.with(|r| r.timeseries.extend(points));
        Ok(())
    }

    async fn save_attributes(
        &self,
        _entity: Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        _ts: i64,
    ) -> Result<(), StorageError> {
        self.with(|r| r.attributes.extend(kvs.into_iter().map(|kv| (scope, kv))));
        Ok(())
    }

    async fn send_rpc(&self, _device: DeviceId, request: RpcRequest) -> Result<(), String> {
        self.with(|r| r.rpc_requests.push(request));
        Ok(())
    }

    async fn reply_to_client_rpc(
        &self,
        _device: DeviceId,
        _session: u64,
        _request_id: String,
        body: String,
    ) -> Result<(), String> {
        self.with(|r| r.rpc_replies.push(body));
        Ok(())
    }

    fn visited(&self, chain: &str, node: &str, outcome: &super::nodes::Outcome) {
        let relations = match outcome {
            super::nodes::Outcome::One(_, rels) => rels
                .as_slice()
                .iter()
                .map(|r| r.name().to_owned())
                .collect(),
            super::nodes::Outcome::Many(msgs) => vec!["Success".to_owned(); msgs.len()],
        };
        self.with(|r| {
            r.path.push(Step {
                chain: chain.to_owned(),
                node: node.to_owned(),
                relations,
            });
        });
    }

    fn log(&self, _node: &str, msg: &Msg, text: Option<&str>) {
        let text = match text {
            Some(t) => t.to_owned(),
            None => format!("Incoming message: {}", msg.data()),
        };
        self.with(|r| r.logs.push(text));
    }
}

async fn run_case(engine: &Engine, case: &Prepared) -> Vec<Mismatch> {
    let mut msg = Msg::new(
        case.msg_type.clone(),
        TenantId(TENANT),
        EntityId::Device(DeviceId(DEVICE)),
        case.data.clone(),
    );
    msg.metadata = case.metadata.clone().into();
    let recorder = Recorder::default();
    let result = engine.run(msg, &recorder).await;
    let mut out = compare(&case.expect, &recorder.into_inner());
    // Offline saves never fail, so an engine error here is a defect of the runner itself.
    if let Err(e) = result {
        out.push(mismatch("error", "none", e.to_string()));
    }
    out
}

fn mismatch(what: &str, expected: impl Into<String>, actual: impl Into<String>) -> Mismatch {
    Mismatch {
        what: what.to_owned(),
        expected: expected.into(),
        actual: actual.into(),
    }
}

/// Checks every expectation given; what is not given is not checked.
fn compare(expect: &Expect, got: &Recorded) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if let Some(table) = &expect.timeseries {
        let actual = latest(got.timeseries.iter().map(|p| (&p.key, &p.value)));
        check_kvs("timeseries", table, &actual, &mut out);
    }
    if let Some(attrs) = &expect.attributes {
        for (scope, table) in attrs.scopes() {
            let Some(table) = table else { continue };
            let actual = latest(
                got.attributes
                    .iter()
                    .filter(|(s, _)| *s == scope)
                    .map(|(_, kv)| (&kv.key, &kv.value)),
            );
            check_kvs(
                &format!("attributes.{}", scope.as_str()),
                table,
                &actual,
                &mut out,
            );
        }
    }
    if expect.nothing_saved && !(got.timeseries.is_empty() && got.attributes.is_empty()) {
        let ts = latest(got.timeseries.iter().map(|p| (&p.key, &p.value)));
        let attrs = latest(got.attributes.iter().map(|(_, kv)| (&kv.key, &kv.value)));
        out.push(mismatch(
            "nothing_saved",
            "no time series, no attributes",
            format!(
                "time series {}, attributes {}",
                kvs_json(&ts),
                kvs_json(&attrs)
            ),
        ));
    }
    if let Some(expected) = &expect.rpc_requests {
        check_rpc_requests(expected, &got.rpc_requests, &mut out);
    }
    let replies: Vec<Value> = got.rpc_replies.iter().map(|b| text_json(b)).collect();
    if let Some(expected) = &expect.rpc_replies {
        let expected: Vec<Value> = expected
            .iter()
            .filter_map(|v| toml_to_json(v).ok())
            .collect();
        if expected != replies {
            out.push(mismatch(
                "rpc_replies",
                Value::Array(expected).to_string(),
                Value::Array(replies.clone()).to_string(),
            ));
        }
    }
    if let Some(keys) = &expect.rpc_reply_keys {
        let shape_ok = match replies.as_slice() {
            [Value::Object(obj)] => {
                obj.len() == keys.len() && keys.iter().all(|k| obj.contains_key(k))
            }
            _ => false,
        };
        if !shape_ok {
            out.push(mismatch(
                "rpc_reply_keys",
                format!("one reply, an object with keys {keys:?}"),
                Value::Array(replies).to_string(),
            ));
        }
    }
    if let Some(expected) = &expect.logs
        && *expected != got.logs
    {
        out.push(mismatch(
            "logs",
            format!("{expected:?}"),
            format!("{:?}", got.logs),
        ));
    }
    out
}

/// The value saved last for each key, keys sorted.
fn latest<'a>(
    kvs: impl Iterator<Item = (&'a String, &'a KvValue)>,
) -> BTreeMap<&'a str, &'a KvValue> {
    kvs.map(|(k, v)| (k.as_str(), v)).collect()
}

/// Exactly the expected keys, each with an equal typed value.
fn check_kvs(
    what: &str,
    expected: &toml::Table,
    actual: &BTreeMap<&str, &KvValue>,
    out: &mut Vec<Mismatch>,
) {
    let same_keys =
        expected.len() == actual.len() && expected.keys().all(|k| actual.contains_key(k.as_str()));
    let same_values = same_keys
        && expected.iter().all(|(k, v)| {
            expected_kv(k, v).is_ok_and(|e| actual.get(k.as_str()).is_some_and(|a| same_kv(&e, a)))
        });
    if !same_values {
        let expected: BTreeMap<&str, KvValue> = expected
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), expected_kv(k, v).ok()?)))
            .collect();
        let expected: BTreeMap<&str, &KvValue> = expected.iter().map(|(k, v)| (*k, v)).collect();
        out.push(mismatch(what, kvs_json(&expected), kvs_json(actual)));
    }
}

/// Typed equality; JSON values compare as JSON (key order does not matter).
fn same_kv(expected: &KvValue, actual: &KvValue) -> bool {
    match (expected, actual) {
        (KvValue::Json(_), KvValue::Json(_)) => expected.to_json() == actual.to_json(),
        _ => expected == actual,
    }
}

/// Values as JSON, so that 21 and 21.0 and "21" read differently.
fn kvs_json(kvs: &BTreeMap<&str, &KvValue>) -> String {
    let obj: Map<String, Value> = kvs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_json()))
        .collect();
    Value::Object(obj).to_string()
}

/// A body as JSON; text that is not JSON stays a string.
fn text_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn check_rpc_requests(expected: &[ExpectRpcRequest], sent: &[RpcRequest], out: &mut Vec<Mismatch>) {
    let matches = |e: &ExpectRpcRequest, s: &RpcRequest| {
        e.method == s.method
            && e.params
                .as_ref()
                .is_none_or(|p| toml_to_json(p).is_ok_and(|p| p == text_json(&s.params)))
            && e.oneway.is_none_or(|o| o == s.oneway)
            && e.persistent.is_none_or(|p| p == s.persistent)
    };
    let same =
        expected.len() == sent.len() && expected.iter().zip(sent).all(|(e, s)| matches(e, s));
    if same {
        return;
    }
    let show_expected: Vec<Value> = expected
        .iter()
        .map(|e| {
            let mut obj = Map::new();
            obj.insert("method".to_owned(), Value::String(e.method.clone()));
            if let Some(p) = e.params.as_ref().and_then(|p| toml_to_json(p).ok()) {
                obj.insert("params".to_owned(), p);
            }
            if let Some(o) = e.oneway {
                obj.insert("oneway".to_owned(), Value::Bool(o));
            }
            if let Some(p) = e.persistent {
                obj.insert("persistent".to_owned(), Value::Bool(p));
            }
            Value::Object(obj)
        })
        .collect();
    let show_sent: Vec<Value> = sent
        .iter()
        .map(|s| {
            serde_json::json!({
                "method": s.method,
                "params": text_json(&s.params),
                "oneway": s.oneway,
                "persistent": s.persistent,
            })
        })
        .collect();
    out.push(mismatch(
        "rpc_requests",
        Value::Array(show_expected).to_string(),
        Value::Array(show_sent).to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(text: &str) -> Expect {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ts(pairs: &[(&str, KvValue)]) -> Vec<TsKv> {
        pairs
            .iter()
            .map(|(k, v)| TsKv {
                ts: 1,
                key: (*k).to_owned(),
                value: v.clone(),
            })
            .collect()
    }

    #[test]
    fn timeseries_compare_typed_values_and_exact_keys() {
        let got = Recorded {
            timeseries: ts(&[
                ("temperature", KvValue::Double(21.5)),
                ("count", KvValue::Long(21)),
                ("name", KvValue::Str("a".into())),
                ("obj", KvValue::Json(r#"{"b":1,"a":[1,2]}"#.into())),
            ]),
            ..Recorded::default()
        };
        let ok = expect(
            r#"timeseries = { temperature = 21.5, count = 21, name = "a", obj = { a = [1, 2], b = 1 } }"#,
        );
        assert_eq!(compare(&ok, &got), []);
        for wrong in [
            r#"timeseries = { temperature = 21.5, count = 21.0, name = "a", obj = { a = [1, 2], b = 1 } }"#,
            r#"timeseries = { temperature = 21.5, count = "21", name = "a", obj = { a = [1, 2], b = 1 } }"#,
            r#"timeseries = { temperature = 21.5, count = 21, name = "a" }"#,
            r#"timeseries = { temperature = 21.5, count = 21, name = "a", obj = { a = [1, 2], b = 1 }, x = 1 }"#,
        ] {
            let m = compare(&expect(wrong), &got);
            assert_eq!(m.len(), 1, "{wrong}");
            assert_eq!(m[0].what, "timeseries");
        }
        let m = compare(&expect("timeseries = { count = 21.0 }"), &got);
        assert!(m[0].expected.contains("21.0"), "{m:?}");
    }

    #[test]
    fn attributes_per_scope_and_nothing_saved() {
        let got = Recorded {
            attributes: vec![(
                AttributeScope::Client,
                Kv {
                    key: "fw".into(),
                    value: KvValue::Str("1.0.0".into()),
                },
            )],
            ..Recorded::default()
        };
        assert_eq!(
            compare(
                &expect("attributes.CLIENT_SCOPE = { fw = \"1.0.0\" }"),
                &got
            ),
            []
        );
        let m = compare(
            &expect("attributes.SERVER_SCOPE = { fw = \"1.0.0\" }"),
            &got,
        );
        assert_eq!(m[0].what, "attributes.SERVER_SCOPE");
        assert_eq!(compare(&expect("nothing_saved = true"), &got).len(), 1);
        assert_eq!(
            compare(&expect("nothing_saved = true"), &Recorded::default()),
            []
        );
        assert!(toml::from_str::<Expect>("attributes.GALAXY_SCOPE = {}").is_err());
    }

    #[test]
    fn rpc_expectations() {
        let got = Recorded {
            rpc_requests: vec![RpcRequest {
                rpc: Uuid::nil(),
                request_id: 0,
                method: "setGpio".into(),
                params: r#"{"pin":4}"#.into(),
                oneway: false,
                persistent: false,
                expiration_time: 0,
                traceparent: None,
            }],
            rpc_replies: vec![r#"{"time":123}"#.into()],
            ..Recorded::default()
        };
        let ok = expect(
            r#"
rpc_requests = [{ method = "setGpio", params = { pin = 4 }, oneway = false }]
rpc_replies = [{ time = 123 }]
rpc_reply_keys = ["time"]
"#,
        );
        assert_eq!(compare(&ok, &got), []);
        let wrong = expect(
            r#"
rpc_requests = [{ method = "setGpio", params = { pin = 5 } }]
rpc_replies = []
rpc_reply_keys = ["time", "zone"]
"#,
        );
        let what: Vec<_> = compare(&wrong, &got).into_iter().map(|m| m.what).collect();
        assert_eq!(what, ["rpc_requests", "rpc_replies", "rpc_reply_keys"]);
        let none = compare(&expect("rpc_reply_keys = []"), &Recorded::default());
        assert_eq!(none.len(), 1, "no reply at all does not match");
    }

    #[test]
    fn logs_compare_in_order() {
        let got = Recorded {
            logs: vec!["a".into(), "b".into()],
            ..Recorded::default()
        };
        assert_eq!(compare(&expect(r#"logs = ["a", "b"]"#), &got), []);
        assert_eq!(compare(&expect(r#"logs = ["b", "a"]"#), &got).len(), 1);
        assert_eq!(compare(&expect(""), &got), [], "unlisted is not checked");
    }

    #[test]
    fn cases_convert_data_and_add_rpc_metadata() {
        let file: FixtureFile = toml::from_str(
            r#"
[[case]]
name = "a"
type = "TO_SERVER_RPC_REQUEST"
data = { method = "m", params = {} }
metadata = { requestId = "9" }

[[case]]
name = "b"
type = "MY_TYPE"
data_json = "null"
"#,
        )
        .unwrap();
        let mut errors = Vec::new();
        let cases = prepare_file("f.toml", file, &mut errors);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(cases[0].metadata["requestId"], "9");
        assert_eq!(cases[0].metadata["sessionId"], "1");
        assert_eq!(
            cases[0].data,
            serde_json::json!({"method": "m", "params": {}})
        );
        assert_eq!(cases[1].data, Value::Null);
        assert_eq!(cases[1].msg_type, MsgType::Custom("MY_TYPE".into()));
        assert!(cases[1].metadata.is_empty());
    }

    #[test]
    fn bad_cases_are_fixture_errors() {
        let file: FixtureFile = toml::from_str(
            r#"
[[case]]
name = "both"
type = "X"
data = 1
data_json = "1"

[[case]]
name = "json"
type = "X"
data_json = "{"

[[case]]
name = "json"
type = "X"
"#,
        )
        .unwrap();
        let mut errors = Vec::new();
        prepare_file("f.toml", file, &mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("tests/f.toml: case 'both': "));
        assert!(errors[2].ends_with("the name is used twice"));
    }
}
