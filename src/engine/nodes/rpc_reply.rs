//! RPC call reply (ThingsBoard's `TbSendRPCReplyNode`): answers a device's own RPC request with the
//! message data, sent verbatim to the session named in the metadata.

use serde::Deserialize;
use serde_json::Value;

use super::{EngineServices, Outcome, RuleNode};
use crate::domain::{EntityId, Msg};
use crate::engine::EngineError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Metadata keys holding the ids (ThingsBoard's `*MetaDataAttribute` settings).
    #[serde(default = "service_key", alias = "serviceIdMetaDataAttribute")]
    pub service_id_key: String,
    #[serde(default = "session_key", alias = "sessionIdMetaDataAttribute")]
    pub session_id_key: String,
    #[serde(default = "request_key", alias = "requestIdMetaDataAttribute")]
    pub request_id_key: String,
}

fn service_key() -> String {
    "serviceId".to_owned()
}
fn session_key() -> String {
    "sessionId".to_owned()
}
fn request_key() -> String {
    "requestId".to_owned()
}

pub struct RpcCallReply {
    config: Config,
}

/// Where the reply goes.
struct Target {
    session: u64,
    request_id: String,
    body: String,
}

impl RpcCallReply {
    pub fn build(config: Config) -> Self {
        Self { config }
    }

    fn target(&self, msg: &Msg) -> Result<Target, String> {
        let meta = |key: &str| {
            msg.metadata
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let request_id = meta(&self.config.request_id_key)
            .ok_or("Request id is not present in the metadata!")?;
        let session = meta(&self.config.session_id_key)
            .ok_or("Session id is not present in the metadata!")?;
        meta(&self.config.service_id_key).ok_or("Service id is not present in the metadata!")?;
        let session = session
            .parse::<u64>()
            .map_err(|_| format!("Session id '{session}' is not valid!"))?;
        let body = match msg.data() {
            Value::Null => String::new(),
            Value::String(s) if s.is_empty() => String::new(),
            other => other.to_string(),
        };
        if body.is_empty() {
            return Err("Request body is empty!".to_owned());
        }
        Ok(Target {
            session,
            request_id: request_id.to_owned(),
            body,
        })
    }
}

impl RuleNode for RpcCallReply {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> Result<Outcome, EngineError> {
        let EntityId::Device(device) = msg.originator else {
            return Ok(Outcome::failure(msg, "Originator is not a device entity!"));
        };
        let target = match self.target(&msg) {
            Ok(t) => t,
            Err(e) => return Ok(Outcome::failure(msg, e)),
        };
        Ok(
            match services
                .reply_to_client_rpc(device, target.session, target.request_id, target.body)
                .await
            {
                Ok(()) => Outcome::success(msg),
                Err(e) => Outcome::failure(msg, e),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, MsgType, TenantId};
    use crate::engine::nodes::testing_rpc::RpcFake;
    use serde_json::json;

    fn node() -> RpcCallReply {
        RpcCallReply::build(Config {
            service_id_key: service_key(),
            session_id_key: session_key(),
            request_id_key: request_key(),
        })
    }

    fn msg(data: Value, meta: &[(&str, &str)]) -> Msg {
        let mut m = Msg::new(
            MsgType::ToServerRpcRequest,
            TenantId::new(),
            EntityId::Device(DeviceId::new()),
            data,
        );
        for (k, v) in meta {
            m.metadata.insert((*k).into(), (*v).into());
        }
        m
    }

    const META: [(&str, &str); 3] = [("requestId", "7"), ("sessionId", "42"), ("serviceId", "n1")];

    #[tokio::test]
    async fn replies_with_data_verbatim() {
        let fake = RpcFake::default();
        let out = node()
            .process(msg(json!({"time": 1}), &META), &fake)
            .await
            .unwrap();
        assert!(!out.is_failure(), "{out:?}");
        assert_eq!(
            fake.replies(),
            vec![(42, "7".to_owned(), r#"{"time":1}"#.to_owned())]
        );
    }

    #[tokio::test]
    async fn missing_ids_or_body_fail() {
        let fake = RpcFake::default();
        for (data, meta) in [
            (json!({}), &META[1..]),
            (json!({}), &META[..2]),
            (Value::Null, &META[..]),
            (
                json!({}),
                &[("requestId", "7"), ("sessionId", "x"), ("serviceId", "n")][..],
            ),
        ] {
            let out = node().process(msg(data, meta), &fake).await.unwrap();
            assert!(out.is_failure(), "{meta:?}");
        }
        assert!(fake.replies().is_empty());
    }
}
