//! Changing and trying rule chains while the server runs: a save over REST written back to the
//! rules directory (validated whole first, files replaced atomically, the running chains swapped
//! at once), dry runs of the current or a candidate chain over messages with every side effect
//! recorded instead of performed, and the test-script endpoint's single script runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use rhai::Dynamic;
use serde_json::{Value, json};
use uuid::Uuid;

use super::chain::Chains;
use super::fixtures::{Recorded, Recorder};
use super::recent::RecordedMsg;
use super::script::dynamic_to_json;
use super::{Engine, tb_json};
use crate::domain::{DeviceId, Msg, TenantId};

/// Why a save or a dry run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The candidate is invalid: every problem, the running chains untouched.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("Rule chain with id {0} wasn't found")]
    UnknownChain(Uuid),
    /// A stale `version`.
    #[error("{0}")]
    Conflict(String),
    #[error("cannot write the rules directory: {0}")]
    Io(String),
}

/// The chain a metadata document names (`ruleChainId.id`).
fn chain_of(body: &Value) -> Result<Uuid, EditError> {
    body.pointer("/ruleChainId/id")
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            EditError::Invalid(vec!["ruleChainId.id: a rule chain id is required".into()])
        })
}

impl Engine {
    /// Saves a `RuleChainMetaData`: validates the whole rules directory with the new files, writes
    /// them (temporary file + rename each) and swaps the running chains. Returns the chain's id.
    /// Blocking (file I/O, script compilation): call it off the async workers.
    pub fn save_metadata(&self, body: &Value) -> Result<Uuid, EditError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let id = chain_of(body)?;
        let current = self.chains();
        let chain = current.by_id(id).ok_or(EditError::UnknownChain(id))?;
        if let Some(version) = body.get("version").and_then(Value::as_i64)
            && version != tb_json::version(chain)
        {
            return Err(EditError::Conflict(format!(
                "The rule chain was changed since version {version} was read; read it again"
            )));
        }
        let candidate = tb_json::candidate(chain, body).map_err(EditError::Invalid)?;
        let chains = self
            .load_candidate(&candidate.overlay)
            .map_err(|e| EditError::Invalid(e.0))?;
        for (rel, text) in &candidate.overlay {
            write_atomically(&self.dir, rel, text).map_err(|e| EditError::Io(e.to_string()))?;
        }
        for (node, failures, until) in candidate.debug {
            self.debug.configure(node, failures, until);
        }
        self.activate(chains, super::SAVED_OVER_REST);
        Ok(id)
    }

    /// Runs `messages` through a chain (the current one, or `candidate` metadata of it) with
    /// recording services: what each message would have saved, sent and logged, and its path.
    pub async fn dry_run(
        &self,
        chain: Uuid,
        candidate: Option<&Value>,
        tenant: TenantId,
        device: DeviceId,
        messages: &[RecordedMsg],
    ) -> Result<Vec<Value>, EditError> {
        let chains: Arc<Chains> = match candidate {
            None => self.chains(),
            Some(body) => {
                let current = self.chains();
                let base = current.by_id(chain).ok_or(EditError::UnknownChain(chain))?;
                let files = tb_json::candidate(base, body).map_err(EditError::Invalid)?;
                Arc::new(
                    self.load_candidate(&files.overlay)
                        .map_err(|e| EditError::Invalid(e.0))?,
                )
            }
        };
        let target = chains.by_id(chain).ok_or(EditError::UnknownChain(chain))?;
        let mut out = Vec::with_capacity(messages.len());
        for input in messages {
            let recorder = Recorder::default();
            let result = target
                .run(
                    input.to_msg(tenant, device),
                    &recorder,
                    &metrics::Counter::noop(),
                )
                .await;
            let error = result.err().map(|e| e.to_string());
            out.push(report(input, recorder.into_inner(), error));
        }
        Ok(out)
    }

    /// Runs one script as the test-script endpoint does: `kind` is ThingsBoard's `scriptType`
    /// (`update`, `generate`, `filter`, `switch`, `json`, `string`). The output is text.
    pub async fn test_script(&self, text: &str, kind: &str, msg: &Msg) -> Result<String, String> {
        let script = self.sandbox.compile("testScript", text)?;
        let result = script.run(msg).await?;
        render(kind, &result)
    }
}

fn render(kind: &str, result: &Dynamic) -> Result<String, String> {
    let wrong = || format!("Wrong result type: {}", result.type_name());
    match kind {
        "filter" => result.as_bool().map(|b| b.to_string()).map_err(|_| wrong()),
        "switch" => {
            let names: Vec<String> = if let Ok(s) = result.clone().into_immutable_string() {
                vec![s.to_string()]
            } else if let Ok(list) = result.clone().into_array() {
                list.into_iter()
                    .map(|d| d.into_immutable_string().map(|s| s.to_string()))
                    .collect::<Result<_, _>>()
                    .map_err(|_| wrong())?
            } else {
                return Err(wrong());
            };
            Ok(json!(names).to_string())
        }
        "string" => Ok(result
            .clone()
            .into_immutable_string()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| result.to_string())),
        _ => dynamic_to_json(result).map(|v| v.to_string()),
    }
}

/// One message's dry run as JSON.
fn report(input: &RecordedMsg, got: Recorded, error: Option<String>) -> Value {
    let timeseries: Vec<Value> = got
        .timeseries
        .iter()
        .map(|p| json!({"key": p.key, "ts": p.ts, "value": p.value.to_json()}))
        .collect();
    let attributes: Vec<Value> = got
        .attributes
        .iter()
        .map(|(scope, kv)| json!({"scope": scope.as_str(), "key": kv.key, "value": kv.value.to_json()}))
        .collect();
    let rpc_requests: Vec<Value> = got
        .rpc_requests
        .iter()
        .map(|r| {
            json!({"method": r.method, "params": text_json(&r.params), "oneway": r.oneway, "persistent": r.persistent})
        })
        .collect();
    let path: Vec<Value> = got
        .path
        .iter()
        .map(|s| json!({"chain": s.chain, "node": s.node, "relations": s.relations}))
        .collect();
    json!({
        "input": input,
        "path": path,
        "timeseries": timeseries,
        "attributes": attributes,
        "rpcRequests": rpc_requests,
        "rpcReplies": got.rpc_replies.iter().map(|b| text_json(b)).collect::<Vec<_>>(),
        "logs": got.logs,
        "error": error,
    })
}

fn text_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Replaces `dir/rel` by `text`: a temporary file beside it, synced, then renamed over it.
fn write_atomically(dir: &Path, rel: &Path, text: &str) -> std::io::Result<()> {
    let target = dir.join(rel);
    let parent = target.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp: PathBuf = parent.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The messages of a dry-run file: a JSON array of `{"type","data","metadata"}` (what
/// `GET /api/ruleChain/dryRun/messages` answers).
pub fn read_messages(text: &str) -> Result<Vec<RecordedMsg>, String> {
    serde_json::from_str(text).map_err(|e| format!("not a JSON array of messages: {e}"))
}
