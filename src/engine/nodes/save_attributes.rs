//! Save attributes: stores a POST_ATTRIBUTES_REQUEST's values in one scope and waits for the commit.

use serde::Deserialize;

use super::{EngineServices, Outcome, RuleNode};
use crate::domain::{AttributeScope, Msg, MsgType, now_ms, payload};
use crate::engine::EngineError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `CLIENT_SCOPE`, `SERVER_SCOPE` (default) or `SHARED_SCOPE`; metadata `scope` wins.
    #[serde(default)]
    pub scope: Option<String>,
}

pub struct SaveAttributes {
    scope: AttributeScope,
}

impl SaveAttributes {
    pub fn build(config: Config) -> Result<Self, String> {
        let scope = match config.scope {
            Some(s) => s.parse()?,
            None => AttributeScope::Server,
        };
        Ok(Self { scope })
    }
}

impl RuleNode for SaveAttributes {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> Result<Outcome, EngineError> {
        if msg.msg_type != MsgType::PostAttributesRequest {
            let error = format!("Unsupported msg type: {}", msg.msg_type.as_str());
            return Ok(Outcome::failure(msg, error));
        }
        let scope = match msg
            .metadata
            .get("scope")
            .map(|s| s.parse::<AttributeScope>())
        {
            None => self.scope,
            Some(Ok(scope)) => scope,
            Some(Err(e)) => return Ok(Outcome::failure(msg, e)),
        };
        // Values the transport already typed are used as they are; anything else is typed from data.
        let kvs = match msg.values() {
            Some(kvs) => kvs.to_vec(),
            None => match payload::attributes(msg.data(), services.typing()) {
                Ok(kvs) => kvs,
                Err(e) => return Ok(Outcome::failure(msg, e.to_string())),
            },
        };
        services
            .save_attributes(msg.originator.uuid(), scope, kvs, now_ms())
            .await?;
        Ok(Outcome::success(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Kv, KvValue};
    use crate::engine::testing::{FakeServices, Saved, msg};

    fn node(scope: Option<&str>) -> SaveAttributes {
        SaveAttributes::build(Config {
            scope: scope.map(str::to_owned),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn scope_from_metadata_then_config_then_server() {
        let services = FakeServices::default();
        let kv = vec![Kv {
            key: "fw".into(),
            value: KvValue::Str("v1.2".into()),
        }];
        let m = msg("POST_ATTRIBUTES_REQUEST", r#"{"fw":"v1.2"}"#);
        let device = m.originator.uuid();
        let mut shared = m.clone();
        shared
            .metadata
            .insert("scope".into(), "SHARED_SCOPE".into());
        node(Some("CLIENT_SCOPE"))
            .process(m.clone(), &services)
            .await
            .unwrap();
        node(Some("CLIENT_SCOPE"))
            .process(shared, &services)
            .await
            .unwrap();
        node(None).process(m, &services).await.unwrap();
        assert_eq!(
            services.saved(),
            [
                Saved::Attributes(device, AttributeScope::Client, kv.clone()),
                Saved::Attributes(device, AttributeScope::Shared, kv.clone()),
                Saved::Attributes(device, AttributeScope::Server, kv),
            ]
        );
    }

    #[tokio::test]
    async fn refuses_bad_input() {
        assert!(
            SaveAttributes::build(Config {
                scope: Some("NOPE".into())
            })
            .is_err()
        );
        let services = FakeServices::default();
        let mut bad_scope = msg("POST_ATTRIBUTES_REQUEST", r#"{"a":1}"#);
        bad_scope.metadata.insert("scope".into(), "X".into());
        for m in [
            msg("POST_TELEMETRY_REQUEST", r#"{"a":1}"#),
            msg("POST_ATTRIBUTES_REQUEST", "[1]"),
            bad_scope,
        ] {
            assert!(node(None).process(m, &services).await.unwrap().is_failure());
        }
        assert!(services.saved().is_empty());
    }

    #[tokio::test]
    async fn storage_errors_propagate() {
        let m = msg("POST_ATTRIBUTES_REQUEST", r#"{"a":1}"#);
        let out = node(None).process(m, &FakeServices::failing()).await;
        assert!(matches!(out, Err(EngineError::Storage(_))));
    }
}
