//! The Rhai sandbox: one shared engine with limits and a wall-clock deadline, scripts compiled once
//! and run on blocking threads (at most `ScriptLimits::workers` at once, so a slow script never
//! holds an async worker that HTTP, health probes and timers need), and the `serde_json::Value` <-> `rhai::Dynamic` conversions (serde_json's `arbitrary_precision`
//! makes `rhai::serde` mis-handle numbers, so the conversions are written out here).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, EvalAltResult, Scope};
use serde_json::Value;

use super::ScriptLimits;
use crate::domain::Msg;
use crate::domain::kv::{double_json, java_double};

/// Deeper values are cut off: converters recurse, and a script can build deep nesting.
const MAX_DEPTH: usize = 128;

thread_local! {
    /// Deadline of the evaluation running on this thread; `on_progress` is one callback per engine,
    /// so the per-evaluation deadline has to live beside it.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Clears the thread's deadline when an evaluation ends, however it ends.
struct DeadlineGuard;

impl DeadlineGuard {
    fn set(timeout: Duration) -> Self {
        DEADLINE.set(Instant::now().checked_add(timeout));
        Self
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.set(None);
    }
}

/// The shared, limited Rhai engine (Send + Sync with the `sync` feature).
pub struct Sandbox {
    engine: rhai::Engine,
    limits: ScriptLimits,
    /// Places for running scripts: `limits.workers` of them.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Sandbox {
    pub fn new(limits: ScriptLimits) -> Self {
        let mut engine = rhai::Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_expr_depths(64, 32)
            .set_max_call_levels(32)
            .set_max_string_size(64 * 1024)
            .set_max_array_size(10_000)
            .set_max_map_size(10_000)
            // No `import` from the file system, no `eval` of generated code.
            .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
            .disable_symbol("eval");
        // Scripts have no clock otherwise; `now_ms()` is the epoch time in milliseconds.
        engine.register_fn("now_ms", crate::domain::now_ms);
        engine.on_print(|text| tracing::debug!(target: "ferroboard::rules::script", "{text}"));
        engine.on_debug(|text, source, pos| {
            tracing::debug!(target: "ferroboard::rules::script", source, %pos, "{text}");
        });
        engine.on_progress(|ops| {
            if ops & 0xff == 0 && DEADLINE.get().is_some_and(|d| Instant::now() > d) {
                Some(Dynamic::from("timeout"))
            } else {
                None
            }
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.workers.max(1)));
        Self {
            engine,
            limits,
            slots,
        }
    }

    /// Compiles a script; the error names `file:line:column`.
    pub fn compile(self: &Arc<Self>, file: &str, text: &str) -> Result<Script, String> {
        match self.engine.compile(text) {
            Ok(ast) => Ok(Script {
                ast: Arc::new(ast),
                sandbox: self.clone(),
            }),
            Err(e) => {
                let pos = e.position();
                Err(format!(
                    "{file}:{}:{}: {}",
                    pos.line().unwrap_or(0),
                    pos.position().unwrap_or(0),
                    e.err_type()
                ))
            }
        }
    }

    fn describe(&self, err: &EvalAltResult) -> String {
        match err {
            EvalAltResult::ErrorTerminated(..) => {
                format!(
                    "Script timed out after {} ms",
                    self.limits.timeout.as_millis()
                )
            }
            EvalAltResult::ErrorTooManyOperations(..) => format!(
                "Script exceeded the operations budget ({})",
                self.limits.max_operations
            ),
            other => other.to_string(),
        }
    }
}

/// A compiled script, ready to run against messages.
pub struct Script {
    ast: Arc<AST>,
    sandbox: Arc<Sandbox>,
}

impl Script {
    /// Runs the script with `msg`, `metadata` and `msgType` in scope; errors and budget hits are text.
    /// Waits for a free place when `workers` scripts are running; the run itself happens on a
    /// blocking thread. A caller that goes away leaves the run to end within its budget.
    pub async fn run(&self, msg: &Msg) -> Result<Dynamic, String> {
        let mut scope = Scope::new();
        scope.push_dynamic("msg", json_to_dynamic(msg.data()));
        scope.push_dynamic("metadata", metadata_to_dynamic(&msg.metadata));
        scope.push_dynamic("msgType", text(msg.msg_type.as_str()));
        let permit = self
            .sandbox
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "script pool closed".to_owned())?;
        let (sandbox, ast) = (self.sandbox.clone(), self.ast.clone());
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _deadline = DeadlineGuard::set(sandbox.limits.timeout);
            sandbox
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
                .map_err(|e| sandbox.describe(&e))
        });
        job.await.map_err(|e| format!("script run aborted: {e}"))?
    }
}

fn text(s: &str) -> Dynamic {
    Dynamic::from(rhai::ImmutableString::from(s))
}

/// JSON to Rhai: integers that fit i64 become INT, other numbers FLOAT, null becomes unit.
pub fn json_to_dynamic(value: &Value) -> Dynamic {
    to_dynamic_at(value, 0)
}

fn to_dynamic_at(value: &Value, depth: usize) -> Dynamic {
    if depth >= MAX_DEPTH {
        return Dynamic::from(value.to_string());
    }
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Dynamic::from_int(i),
            (None, Some(f)) => Dynamic::from_float(f),
            // Out of f64 range: keep the digits rather than lose them.
            (None, None) => Dynamic::from(n.to_string()),
        },
        Value::String(s) => text(s),
        Value::Array(items) => {
            Dynamic::from_array(items.iter().map(|v| to_dynamic_at(v, depth + 1)).collect())
        }
        Value::Object(obj) => Dynamic::from_map(
            obj.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic_at(v, depth + 1)))
                .collect(),
        ),
    }
}

/// The metadata map as a Rhai map of strings.
pub fn metadata_to_dynamic(metadata: &BTreeMap<String, String>) -> Dynamic {
    Dynamic::from_map(
        metadata
            .iter()
            .map(|(k, v)| (k.as_str().into(), text(v)))
            .collect(),
    )
}

/// Rhai to JSON: FLOAT stays a JSON double (`25.0`), unit becomes null.
pub fn dynamic_to_json(value: &Dynamic) -> Result<Value, String> {
    to_json_at(value, 0)
}

fn to_json_at(value: &Dynamic, depth: usize) -> Result<Value, String> {
    if depth >= MAX_DEPTH {
        return Err(format!("value nested deeper than {MAX_DEPTH} levels"));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(f) = value.as_float() {
        return Ok(double_json(f));
    }
    if let Ok(s) = value.as_immutable_string_ref() {
        return Ok(Value::String(s.as_str().to_owned()));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Ok(items) = value.as_array_ref() {
        let out: Result<Vec<Value>, String> =
            items.iter().map(|v| to_json_at(v, depth + 1)).collect();
        return out.map(Value::Array);
    }
    if let Ok(map) = value.as_map_ref() {
        let mut out = serde_json::Map::with_capacity(map.len());
        for (k, v) in map.iter() {
            out.insert(k.to_string(), to_json_at(v, depth + 1)?);
        }
        return Ok(Value::Object(out));
    }
    if let Ok(blob) = value.as_blob_ref() {
        return Ok(Value::Array(blob.iter().map(|b| Value::from(*b)).collect()));
    }
    Ok(Value::String(value.to_string()))
}

/// A metadata value written back by a script: strings as they are, doubles as Java prints them,
/// containers as JSON text; `None` for unit (the key is dropped, as TBEL drops nulls).
pub fn metadata_string(value: &Dynamic) -> Result<Option<String>, String> {
    if value.is_unit() {
        return Ok(None);
    }
    if let Ok(s) = value.as_immutable_string_ref() {
        return Ok(Some(s.as_str().to_owned()));
    }
    if let Ok(f) = value.as_float() {
        return Ok(Some(java_double(f)));
    }
    if value.is_array() || value.is_map() || value.is_blob() {
        return dynamic_to_json(value).map(|v| Some(v.to_string()));
    }
    Ok(Some(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntityId, MsgType, TenantId};

    fn sandbox(max_operations: u64, timeout_ms: u64) -> Arc<Sandbox> {
        Arc::new(Sandbox::new(ScriptLimits {
            max_operations,
            timeout: Duration::from_millis(timeout_ms),
            workers: 2,
        }))
    }

    fn msg(data: &str) -> Msg {
        let tenant = TenantId::new();
        let data = serde_json::from_str(data).unwrap();
        Msg::new(
            MsgType::PostTelemetryRequest,
            tenant,
            EntityId::Tenant(tenant),
            data,
        )
    }

    #[test]
    fn numbers_round_trip_with_their_kind() {
        let v: Value = serde_json::from_str(
            r#"{"i":42,"f":25.0,"g":1.5,"big":1e400,"n":null,"a":[true,"s"]}"#,
        )
        .unwrap();
        let d = json_to_dynamic(&v);
        let back = dynamic_to_json(&d).unwrap();
        assert_eq!(back["i"].to_string(), "42");
        assert_eq!(back["f"].to_string(), "25.0");
        assert_eq!(back["g"].to_string(), "1.5");
        assert!(
            back["big"].as_str().is_some_and(|s| s.starts_with("1e")),
            "{}",
            back["big"]
        );
        assert_eq!(back["n"], Value::Null);
        assert_eq!(back["a"].to_string(), r#"[true,"s"]"#);
    }

    #[tokio::test]
    async fn script_sees_msg_metadata_and_type() {
        let s = sandbox(10_000, 1000);
        let script = s
            .compile("t.rhai", r#"msg.t * 2 + metadata.k.parse_int() + if msgType == "POST_TELEMETRY_REQUEST" { 1 } else { 0 }"#)
            .unwrap();
        let mut m = msg(r#"{"t":20}"#);
        m.metadata.insert("k".into(), "3".into());
        assert_eq!(script.run(&m).await.unwrap().as_int().unwrap(), 44);
    }

    #[test]
    fn compile_error_names_file_and_line() {
        let err = sandbox(10_000, 1000)
            .compile("bad.rhai", "let x = 1;\nlet = ;")
            .err()
            .unwrap();
        assert!(err.starts_with("bad.rhai:2:"), "{err}");
    }

    #[tokio::test]
    async fn infinite_loop_stops_on_operations_budget() {
        let script = sandbox(50_000, 60_000)
            .compile("l.rhai", "loop {}")
            .unwrap();
        let err = script.run(&msg("{}")).await.unwrap_err();
        assert!(err.contains("operations budget"), "{err}");
    }

    #[tokio::test]
    async fn infinite_loop_stops_on_deadline() {
        let script = sandbox(0, 20)
            .compile("l.rhai", "let x = 0; loop { x += 1; }")
            .unwrap();
        let started = Instant::now();
        let err = script.run(&msg("{}")).await.unwrap_err();
        assert!(err.contains("timed out after 20 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_deadline_is_cleared_however_a_run_ends() {
        {
            let _guard = DeadlineGuard::set(Duration::from_secs(60));
            assert!(DEADLINE.get().is_some());
        }
        assert_eq!(DEADLINE.get(), None);
    }

    /// A script that runs for its whole budget does not hold the async thread: on a
    /// single-threaded runtime a timer still fires while it runs, and the pool's one place is
    /// taken meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_script_does_not_stall_the_runtime() {
        let s = Arc::new(Sandbox::new(ScriptLimits {
            max_operations: u64::MAX,
            timeout: Duration::from_secs(2),
            workers: 1,
        }));
        let slow = s.compile("slow.rhai", "loop {}").unwrap();
        let m = msg("{}");
        let run = slow.run(&m);
        tokio::pin!(run);
        tokio::select! {
            biased;
            r = &mut run => panic!("the script ended before the timer: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        assert_eq!(s.slots.available_permits(), 0, "the one place is taken");
        let err = run.await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert_eq!(s.slots.available_permits(), 1, "and freed afterwards");
    }

    #[tokio::test]
    async fn sandbox_limits_apply() {
        let s = sandbox(1_000_000, 5_000);
        let grow = s
            .compile("g.rhai", r#"let s = "x"; loop { s += s; }"#)
            .unwrap();
        assert!(
            grow.run(&msg("{}"))
                .await
                .unwrap_err()
                .contains("too large")
        );
        let recurse = s.compile("r.rhai", "fn f(x) { f(x) } f(1)").unwrap();
        assert!(
            recurse
                .run(&msg("{}"))
                .await
                .unwrap_err()
                .contains("Stack overflow")
        );
        let import = s.compile("i.rhai", r#"import "secret" as m; 1"#).unwrap();
        assert!(import.run(&msg("{}")).await.is_err());
        assert!(s.compile("e.rhai", r#"eval("1")"#).is_err());
    }

    #[tokio::test]
    async fn deep_values_are_refused_not_overflowed() {
        let s = sandbox(1_000_000, 5_000);
        let deep = s
            .compile("d.rhai", "let x = []; for i in 0..500 { x = [x]; } x")
            .unwrap();
        let value = deep.run(&msg("{}")).await.unwrap();
        assert!(
            dynamic_to_json(&value)
                .unwrap_err()
                .contains("nested deeper")
        );
    }

    #[test]
    fn metadata_values_are_stringified() {
        assert_eq!(
            metadata_string(&Dynamic::from_float(25.0))
                .unwrap()
                .unwrap(),
            "25.0"
        );
        assert_eq!(
            metadata_string(&Dynamic::from_int(7)).unwrap().unwrap(),
            "7"
        );
        assert_eq!(
            metadata_string(&Dynamic::from_bool(true)).unwrap().unwrap(),
            "true"
        );
        assert_eq!(metadata_string(&Dynamic::UNIT).unwrap(), None);
        let arr = Dynamic::from_array(vec![Dynamic::from_int(1)]);
        assert_eq!(metadata_string(&arr).unwrap().unwrap(), "[1]");
    }
}
