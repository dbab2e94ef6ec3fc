//! Message type switch: routes each message on its type's label ("Post telemetry", ..., "Other").

use serde::Deserialize;

use super::{EngineServices, Outcome, Relation, RuleNode};
use crate::domain::Msg;
use crate::engine::EngineError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// ThingsBoard's `{"version": 0}`; accepted and ignored.
    #[serde(default, rename = "version")]
    pub _version: Option<i64>,
}

pub struct MessageTypeSwitch;

impl MessageTypeSwitch {
    pub fn build(_config: Config) -> Self {
        Self
    }
}

impl RuleNode for MessageTypeSwitch {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        _services: &S,
    ) -> Result<Outcome, EngineError> {
        let label = msg.msg_type.switch_label();
        Ok(Outcome::on(msg, Relation::Label(label)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::nodes::Relations;
    use crate::engine::testing::{FakeServices, msg};

    async fn label_of(msg_type: &str) -> String {
        match MessageTypeSwitch
            .process(msg(msg_type, "{}"), &FakeServices::default())
            .await
        {
            Ok(Outcome::One(_, Relations::One(r))) => r.name().to_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn emits_the_switch_label() {
        assert_eq!(label_of("POST_TELEMETRY_REQUEST").await, "Post telemetry");
        assert_eq!(label_of("POST_ATTRIBUTES_REQUEST").await, "Post attributes");
        assert_eq!(
            label_of("TO_SERVER_RPC_REQUEST").await,
            "RPC Request from Device"
        );
        assert_eq!(label_of("MY_CUSTOM").await, "Other");
    }
}
