//! RPC call request (ThingsBoard's `TbSendRPCRequestNode`): sends the message's `{method, params}` to
//! its device as a server-side RPC. `Success` once handed to the device's session (wherever it is);
//! the device's answer goes to the waiting REST caller, not out of this node.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{EngineServices, Outcome, RuleNode};
use crate::bus::RpcRequest;
use crate::domain::{EntityId, Msg, now_ms};
use crate::engine::EngineError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Expiration of requests whose metadata has no `expirationTime`.
    #[serde(default = "default_timeout", alias = "timeoutInSeconds")]
    pub timeout_in_seconds: u32,
}

fn default_timeout() -> u32 {
    60
}

pub struct RpcCallRequest {
    timeout_ms: i64,
}

impl RpcCallRequest {
    pub fn build(config: Config) -> Self {
        Self {
            timeout_ms: i64::from(config.timeout_in_seconds) * 1000,
        }
    }

    /// The request the message describes, or the Failure text.
    fn request(&self, msg: &Msg) -> Result<RpcRequest, String> {
        let Some(data) = msg.data().as_object() else {
            return Err("Request body is not a JSON object!".to_owned());
        };
        let method = match data.get("method") {
            Some(Value::String(m)) => m.clone(),
            Some(Value::Null) | None => return Err("Method is not present in the message!".into()),
            Some(other) => other.to_string(),
        };
        let params = match data.get("params") {
            Some(Value::String(p)) => p.clone(),
            Some(p) => p.to_string(),
            None => return Err("Params are not present in the message!".into()),
        };
        let meta = |key: &str| msg.metadata.get(key).map(|v| v.trim());
        let flag = |key: &str| meta(key).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let rpc = meta("requestUUID")
            .and_then(|v| Uuid::parse_str(v).ok())
            .unwrap_or_else(Uuid::new_v4);
        let expiration_time = meta("expirationTime")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| now_ms().saturating_add(self.timeout_ms));
        Ok(RpcRequest {
            rpc,
            request_id: 0,
            method,
            params,
            oneway: flag("oneway"),
            persistent: flag("persistent"),
            expiration_time,
            traceparent: crate::observability::trace::current_traceparent(),
        })
    }
}

impl RuleNode for RpcCallRequest {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> Result<Outcome, EngineError> {
        let EntityId::Device(device) = msg.originator else {
            return Ok(fail(msg, "Originator is not a device entity!"));
        };
        let request = match self.request(&msg) {
            Ok(r) => r,
            Err(e) => return Ok(fail(msg, e)),
        };
        Ok(match services.send_rpc(device, request).await {
            Ok(()) => Outcome::success(msg),
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "RPC not handed to the bus");
                fail(msg, "INTERNAL")
            }
        })
    }
}

/// `Failure` with `{"error": text}` as data, as ThingsBoard's node answers.
fn fail(mut msg: Msg, error: impl Into<String>) -> Outcome {
    let error = error.into();
    msg.set_data(json!({ "error": error }));
    Outcome::failure(msg, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, MsgType, TenantId};
    use crate::engine::nodes::testing_rpc::RpcFake;

    fn msg(data: Value, meta: &[(&str, &str)]) -> Msg {
        let mut m = Msg::new(
            MsgType::RpcCallFromServerToDevice,
            TenantId::new(),
            EntityId::Device(DeviceId::new()),
            data,
        );
        for (k, v) in meta {
            m.metadata.insert((*k).into(), (*v).into());
        }
        m
    }

    async fn run(m: Msg) -> (Outcome, Vec<RpcRequest>) {
        let fake = RpcFake::default();
        let node = RpcCallRequest::build(Config {
            timeout_in_seconds: 60,
        });
        let out = node.process(m, &fake).await.expect("no engine error");
        (out, fake.sent())
    }

    #[tokio::test]
    async fn sends_params_text_and_metadata_flags() {
        let id = Uuid::new_v4();
        let m = msg(
            json!({"method": "setGpio", "params": "{\"pin\":4}"}),
            &[
                ("requestUUID", &id.to_string()),
                ("oneway", "true"),
                ("persistent", "false"),
                ("expirationTime", "1234"),
            ],
        );
        let (out, sent) = run(m).await;
        assert!(!out.is_failure(), "{out:?}");
        assert_eq!(sent.len(), 1);
        let r = &sent[0];
        assert_eq!(
            (r.rpc, r.method.as_str(), r.params.as_str()),
            (id, "setGpio", "{\"pin\":4}")
        );
        assert!(r.oneway && !r.persistent);
        assert_eq!(r.expiration_time, 1234);
    }

    #[tokio::test]
    async fn json_params_are_serialised_and_defaults_apply() {
        let before = now_ms();
        let (out, sent) = run(msg(json!({"method": "m", "params": {"a": 1}}), &[])).await;
        assert!(!out.is_failure());
        assert_eq!(sent[0].params, r#"{"a":1}"#);
        assert!(!sent[0].oneway);
        assert!(sent[0].expiration_time >= before + 60_000);
    }

    #[tokio::test]
    async fn bad_messages_fail_without_sending() {
        for data in [json!({"params": {}}), json!({"method": "m"}), json!([1])] {
            let (out, sent) = run(msg(data.clone(), &[])).await;
            assert!(out.is_failure(), "{data}");
            assert!(sent.is_empty());
            let Outcome::One(m, _) = out else { panic!() };
            assert!(m.data()["error"].is_string(), "{}", m.data());
        }
        let mut m = msg(json!({"method": "m", "params": {}}), &[]);
        m.originator = EntityId::Tenant(TenantId::new());
        assert!(run(m).await.0.is_failure());
    }
}
