//! Rule nodes: the kinds, their named outputs (`Relation`, `Outcome`), the runtime trait and the
//! build step that turns a node's typed config into a ready node (scripts compiled once).

mod filter;
mod log;
mod rpc_reply;
mod rpc_request;
mod save_attributes;
mod save_timeseries;
mod switch;
#[cfg(test)]
mod testing_rpc;
mod transform;
mod type_switch;

use std::future::Future;
use std::path::{Component, Path};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::EngineError;
use super::script::{Sandbox, Script};
use crate::bus::RpcRequest;
use crate::domain::StorageError;
use crate::domain::kv::Typing;
use crate::domain::{AttributeScope, DeviceId, Kv, Msg, TenantId, TsKv};
use crate::services::Services;

/// The relation a node emits a message on; matched case-insensitively against connection types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relation {
    Success,
    Failure,
    True,
    False,
    /// A message-type-switch label ("Post telemetry", "Other", ...).
    Label(&'static str),
    /// A name chosen by a switch script.
    Named(String),
}

impl Relation {
    pub fn name(&self) -> &str {
        match self {
            Self::Success => "Success",
            Self::Failure => "Failure",
            Self::True => "True",
            Self::False => "False",
            Self::Label(l) => l,
            Self::Named(n) => n,
        }
    }
}

/// The relations one message leaves on; `One` spares an allocation on the common path.
#[derive(Debug)]
pub enum Relations {
    One(Relation),
    Many(Vec<Relation>),
}

impl Relations {
    pub fn as_slice(&self) -> &[Relation] {
        match self {
            Self::One(r) => std::slice::from_ref(r),
            Self::Many(v) => v,
        }
    }
}

/// What a node produced.
#[derive(Debug)]
// `One` is the hot path; boxing its message would cost an allocation per node run.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// One message on one or more relations.
    One(Msg, Relations),
    /// Several messages (a transform returning an array), each on `Success`.
    Many(Vec<Msg>),
}

impl Outcome {
    pub fn on(msg: Msg, relation: Relation) -> Self {
        Self::One(msg, Relations::One(relation))
    }

    pub fn success(msg: Msg) -> Self {
        Self::on(msg, Relation::Success)
    }

    /// `Failure`, with the error text in metadata `error`.
    pub fn failure(mut msg: Msg, error: impl Into<String>) -> Self {
        msg.metadata.insert("error".to_owned(), error.into());
        Self::on(msg, Relation::Failure)
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Self::One(_, rels) if rels.as_slice().contains(&Relation::Failure))
    }
}

/// Lines all log nodes together write per second, at most; `suppressed` counts the others.
const RULE_LOG_PER_SECOND: u32 = 100;
static RULE_LOG: crate::observability::LogLimiter =
    crate::observability::LogLimiter::new(1000, RULE_LOG_PER_SECOND);

/// What nodes need from the service layer; `Services` in production, a fake in unit tests.
pub trait EngineServices: Sync {
    fn typing(&self) -> Typing;

    fn save_timeseries(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// As `save_timeseries`, the points expiring `ttl_s` seconds after their timestamps (0:
    /// the tenant's default). Fakes that do not care keep the points without a TTL.
    fn save_timeseries_ttl(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
        _ttl_s: u64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.save_timeseries(entity, points)
    }

    fn save_attributes(
        &self,
        entity: Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        ts: i64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Checks the time-series keys of a message against its tenant's key quota: `Some(reason)`
    /// when refused (naming the limit and the key).
    fn admit_timeseries_keys(
        &self,
        _tenant: TenantId,
        _keys: &[&str],
    ) -> impl Future<Output = Result<Option<String>, StorageError>> + Send {
        async { Ok(None) }
    }

    /// Hands a server-side RPC to the device's session, wherever it is.
    fn send_rpc(
        &self,
        _device: DeviceId,
        _request: RpcRequest,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Err("RPC is not available".to_owned()) }
    }

    /// What a `log` node produced: its script's text, or `None` for the built-in format of `msg`.
    /// The server writes it to the log at INFO (target `ferroboard::rules::log`).
    fn log(&self, node: &str, msg: &Msg, text: Option<&str>) {
        // Every message may reach a log node: at most `RULE_LOG_PER_SECOND` lines a second.
        let Some(suppressed) = RULE_LOG.allow() else {
            return;
        };
        match text {
            Some(text) => {
                tracing::info!(target: "ferroboard::rules::log", node = %node, suppressed, "{text}");
            }
            None => tracing::info!(
                target: "ferroboard::rules::log",
                node = %node,
                suppressed,
                msg_type = msg.msg_type.as_str(),
                originator = %msg.originator.uuid(),
                data = %msg.data(),
                metadata = ?msg.metadata,
                "Incoming message"
            ),
        }
    }

    /// Answers a device's own RPC request on the session that asked.
    fn reply_to_client_rpc(
        &self,
        _device: DeviceId,
        _session: u64,
        _request_id: String,
        _body: String,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Err("RPC is not available".to_owned()) }
    }
}

impl EngineServices for Services {
    fn typing(&self) -> Typing {
        self.typing
    }

    fn save_timeseries(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        Services::save_timeseries(self, entity, points)
    }

    fn save_timeseries_ttl(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
        ttl_s: u64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        Services::save_timeseries_ttl(self, entity, points, ttl_s)
    }

    fn save_attributes(
        &self,
        entity: Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        ts: i64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        Services::save_attributes(self, entity, scope, kvs, ts)
    }

    async fn admit_timeseries_keys(
        &self,
        tenant: TenantId,
        keys: &[&str],
    ) -> Result<Option<String>, StorageError> {
        use crate::services::key_quota::QuotaError;
        match self.key_quota.admit(&self.store, tenant, keys).await {
            Ok(()) => Ok(None),
            Err(e @ QuotaError::Exceeded { .. }) => Ok(Some(e.to_string())),
            Err(QuotaError::Storage(e)) => Err(e),
        }
    }

    async fn send_rpc(&self, device: DeviceId, request: RpcRequest) -> Result<(), String> {
        self.rpc
            .send(device, request)
            .await
            .map_err(|e| e.to_string())
    }

    async fn reply_to_client_rpc(
        &self,
        device: DeviceId,
        session: u64,
        request_id: String,
        body: String,
    ) -> Result<(), String> {
        self.rpc
            .reply_to_client(device, session, request_id, body)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The runtime side of a node. `Err` is only for failures the sender must learn about (storage);
/// everything else is an `Outcome` on `Failure`.
pub trait RuleNode {
    fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> impl Future<Output = Result<Outcome, EngineError>> + Send;
}

/// Node kinds, by the name used in chain files (ThingsBoard's class name is accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MessageTypeSwitch,
    ScriptTransform,
    ScriptFilter,
    ScriptSwitch,
    SaveTimeseries,
    SaveAttributes,
    Log,
    RpcCallRequest,
    RpcCallReply,
}

impl Kind {
    const ALL: [(Kind, &'static str, &'static str); 9] = [
        (
            Self::MessageTypeSwitch,
            "message_type_switch",
            "filter.TbMsgTypeSwitchNode",
        ),
        (
            Self::ScriptTransform,
            "script_transform",
            "transform.TbTransformMsgNode",
        ),
        (Self::ScriptFilter, "script_filter", "filter.TbJsFilterNode"),
        (Self::ScriptSwitch, "script_switch", "filter.TbJsSwitchNode"),
        (
            Self::SaveTimeseries,
            "save_timeseries",
            "telemetry.TbMsgTimeseriesNode",
        ),
        (
            Self::SaveAttributes,
            "save_attributes",
            "telemetry.TbMsgAttributesNode",
        ),
        (Self::Log, "log", "action.TbLogNode"),
        (
            Self::RpcCallRequest,
            "rpc_call_request",
            "rpc.TbSendRPCRequestNode",
        ),
        (
            Self::RpcCallReply,
            "rpc_call_reply",
            "rpc.TbSendRPCReplyNode",
        ),
    ];

    pub fn parse(name: &str) -> Option<Self> {
        let tb = name.strip_prefix("org.thingsboard.rule.engine.");
        Self::ALL
            .iter()
            .find(|(_, n, class)| *n == name || tb == Some(*class))
            .map(|(k, _, _)| *k)
    }

    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|(_, n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("?")
    }

    /// The relations a kind can emit, when fixed (switches emit open-ended names).
    pub fn outputs(self) -> Option<&'static [&'static str]> {
        match self {
            Self::MessageTypeSwitch | Self::ScriptSwitch => None,
            Self::ScriptFilter => Some(&["True", "False", "Failure"]),
            Self::ScriptTransform
            | Self::SaveTimeseries
            | Self::SaveAttributes
            | Self::Log
            | Self::RpcCallRequest
            | Self::RpcCallReply => Some(&["Success", "Failure"]),
        }
    }
}

/// A built node, dispatched statically (no boxed futures on the hot path).
pub enum Node {
    MessageTypeSwitch(type_switch::MessageTypeSwitch),
    ScriptTransform(transform::ScriptTransform),
    ScriptFilter(filter::ScriptFilter),
    ScriptSwitch(switch::ScriptSwitch),
    SaveTimeseries(save_timeseries::SaveTimeseries),
    SaveAttributes(save_attributes::SaveAttributes),
    Log(log::Log),
    RpcCallRequest(rpc_request::RpcCallRequest),
    RpcCallReply(rpc_reply::RpcCallReply),
}

impl Node {
    pub async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> Result<Outcome, EngineError> {
        match self {
            Self::MessageTypeSwitch(n) => n.process(msg, services).await,
            Self::ScriptTransform(n) => n.process(msg, services).await,
            Self::ScriptFilter(n) => n.process(msg, services).await,
            Self::ScriptSwitch(n) => n.process(msg, services).await,
            Self::SaveTimeseries(n) => n.process(msg, services).await,
            Self::SaveAttributes(n) => n.process(msg, services).await,
            Self::Log(n) => n.process(msg, services).await,
            Self::RpcCallRequest(n) => n.process(msg, services).await,
            Self::RpcCallReply(n) => n.process(msg, services).await,
        }
    }

    /// Typed config (the node's table minus `id`/`type`/`name`) -> a ready node.
    pub fn build(kind: Kind, config: toml::Table, ctx: &BuildCtx<'_>) -> Result<Self, String> {
        Ok(match kind {
            Kind::MessageTypeSwitch => Self::MessageTypeSwitch(
                type_switch::MessageTypeSwitch::build(parse_config(config)?),
            ),
            Kind::ScriptTransform => Self::ScriptTransform(transform::ScriptTransform::build(
                parse_config(config)?,
                ctx,
            )?),
            Kind::ScriptFilter => {
                Self::ScriptFilter(filter::ScriptFilter::build(parse_config(config)?, ctx)?)
            }
            Kind::ScriptSwitch => {
                Self::ScriptSwitch(switch::ScriptSwitch::build(parse_config(config)?, ctx)?)
            }
            Kind::SaveTimeseries => Self::SaveTimeseries(save_timeseries::SaveTimeseries::build(
                parse_config(config)?,
            )),
            Kind::SaveAttributes => Self::SaveAttributes(save_attributes::SaveAttributes::build(
                parse_config(config)?,
            )?),
            Kind::Log => Self::Log(log::Log::build(parse_config(config)?, ctx)?),
            Kind::RpcCallRequest => {
                Self::RpcCallRequest(rpc_request::RpcCallRequest::build(parse_config(config)?))
            }
            Kind::RpcCallReply => {
                Self::RpcCallReply(rpc_reply::RpcCallReply::build(parse_config(config)?))
            }
        })
    }
}

fn parse_config<T: DeserializeOwned>(config: toml::Table) -> Result<T, String> {
    toml::Value::Table(config)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())
}

/// What building a node may use: the rules directory (for scripts) and the sandbox.
pub struct BuildCtx<'a> {
    pub dir: &'a Path,
    pub sandbox: &'a Arc<Sandbox>,
    /// The node's id, for log lines.
    pub node_id: &'a str,
}

impl BuildCtx<'_> {
    /// Reads and compiles a script file given relative to the rules directory.
    pub fn script(&self, file: &str) -> Result<Script, String> {
        let rel = Path::new(file);
        let inside = rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if file.is_empty() || !inside {
            return Err(format!(
                "script path '{file}' must be relative to the rules directory, without '..'"
            ));
        }
        let text = std::fs::read_to_string(self.dir.join(rel))
            .map_err(|e| format!("cannot read script file '{file}': {e}"))?;
        self.sandbox.compile(file, &text)
    }
}
