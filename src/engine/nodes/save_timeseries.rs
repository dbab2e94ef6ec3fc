//! Save time series: stores a POST_TELEMETRY_REQUEST's values and waits for the commit.

use serde::Deserialize;

use super::{EngineServices, Outcome, RuleNode};
use crate::domain::{Msg, MsgType, TsKv, now_ms, payload};
use crate::engine::EngineError;

/// A tenant over its key quota refuses every message with a new key: one line a second.
static QUOTA_LOG: crate::observability::LogLimiter = crate::observability::LogLimiter::per_second();

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stamp values without their own `ts` with the server time instead of metadata `ts`.
    #[serde(default)]
    pub use_server_ts: bool,
    /// Seconds after their timestamps the points expire (ThingsBoard's `defaultTTL`); 0 = the
    /// tenant's default (`retention.default_ttl_s`). A message's metadata `TTL` wins over it.
    #[serde(default)]
    pub ttl: u64,
}

pub struct SaveTimeseries {
    use_server_ts: bool,
    ttl: u64,
}

impl SaveTimeseries {
    pub fn build(config: Config) -> Self {
        Self {
            use_server_ts: config.use_server_ts,
            ttl: config.ttl,
        }
    }

    /// The message's metadata `TTL` (seconds) when it is a number, else the node's.
    fn ttl_of(&self, msg: &Msg) -> u64 {
        msg.metadata
            .get("TTL")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map_or(self.ttl, |t| u64::try_from(t).unwrap_or(0))
    }
}

impl RuleNode for SaveTimeseries {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> Result<Outcome, EngineError> {
        if msg.msg_type != MsgType::PostTelemetryRequest {
            let error = format!("Unsupported msg type: {}", msg.msg_type.as_str());
            return Ok(Outcome::failure(msg, error));
        }
        let default_ts = if self.use_server_ts {
            now_ms()
        } else {
            msg.metadata_ts()
        };
        // Values the transport already typed are used as they are; anything else is typed from data.
        let points: Vec<TsKv> = match msg.values() {
            Some(values) => values
                .iter()
                .map(|kv| TsKv {
                    ts: default_ts,
                    key: kv.key.clone(),
                    value: kv.value.clone(),
                })
                .collect(),
            None => match payload::telemetry(msg.data(), services.typing()) {
                Ok(groups) => payload::points(groups, default_ts),
                Err(e) => return Ok(Outcome::failure(msg, e.to_string())),
            },
        };
        if points.is_empty() {
            let error = format!("Msg body is empty: {}", msg.data());
            return Ok(Outcome::failure(msg, error));
        }
        let keys: Vec<&str> = points.iter().map(|p| p.key.as_str()).collect();
        if let Some(refused) = services.admit_timeseries_keys(msg.tenant, &keys).await? {
            if let Some(suppressed) = QUOTA_LOG.allow() {
                tracing::warn!(tenant = %msg.tenant.0, suppressed, "{refused}");
            }
            return Ok(Outcome::failure(msg, refused));
        }
        let ttl = self.ttl_of(&msg);
        services
            .save_timeseries_ttl(msg.originator.uuid(), points, ttl)
            .await?;
        Ok(Outcome::success(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KvValue;
    use crate::engine::testing::{FakeServices, Saved, msg};

    #[tokio::test]
    async fn saves_with_metadata_ts_and_group_ts() {
        let services = FakeServices::default();
        let mut m = msg(
            "POST_TELEMETRY_REQUEST",
            r#"[{"t":25},{"ts":5,"values":{"h":1.5}}]"#,
        );
        m.metadata.insert("ts".into(), "1000".into());
        let device = m.originator.uuid();
        let out = SaveTimeseries::build(Config::default())
            .process(m, &services)
            .await
            .unwrap();
        assert!(!out.is_failure());
        let expected = vec![
            TsKv {
                ts: 1000,
                key: "t".into(),
                value: KvValue::Long(25),
            },
            TsKv {
                ts: 5,
                key: "h".into(),
                value: KvValue::Double(1.5),
            },
        ];
        assert_eq!(services.saved(), [Saved::Timeseries(device, expected)]);
    }

    #[tokio::test]
    async fn refuses_other_types_and_bad_payloads() {
        let services = FakeServices::default();
        let node = SaveTimeseries::build(Config::default());
        for (t, data, error) in [
            (
                "POST_ATTRIBUTES_REQUEST",
                r#"{"a":1}"#,
                "Unsupported msg type: POST_ATTRIBUTES_REQUEST",
            ),
            (
                "POST_TELEMETRY_REQUEST",
                "5",
                "telemetry must be a JSON object or array",
            ),
            ("POST_TELEMETRY_REQUEST", "{}", "Msg body is empty: {}"),
        ] {
            let Outcome::One(m, _) = node.process(msg(t, data), &services).await.unwrap() else {
                panic!()
            };
            assert_eq!(m.metadata["error"], error);
        }
        assert!(services.saved().is_empty());
    }

    #[tokio::test]
    async fn the_ttl_is_the_nodes_unless_the_metadata_names_one() {
        let services = FakeServices::default();
        let node = SaveTimeseries::build(Config {
            ttl: 60,
            ..Config::default()
        });
        let mut with_meta = msg("POST_TELEMETRY_REQUEST", r#"{"a":1}"#);
        with_meta.metadata.insert("TTL".into(), "5".into());
        let mut bad_meta = msg("POST_TELEMETRY_REQUEST", r#"{"a":1}"#);
        bad_meta.metadata.insert("TTL".into(), "soon".into());
        for m in [
            msg("POST_TELEMETRY_REQUEST", r#"{"a":1}"#),
            with_meta,
            bad_meta,
        ] {
            assert!(!node.process(m, &services).await.unwrap().is_failure());
        }
        assert_eq!(services.ttls(), [60, 5, 60]);
        let config: Config = toml::from_str("ttl = 86400").unwrap();
        assert_eq!(config.ttl, 86400);
    }

    #[tokio::test]
    async fn storage_errors_propagate() {
        let node = SaveTimeseries::build(Config::default());
        let out = node
            .process(
                msg("POST_TELEMETRY_REQUEST", r#"{"a":1}"#),
                &FakeServices::failing(),
            )
            .await;
        assert!(matches!(out, Err(EngineError::Storage(_))));
    }
}
