//! Script filter: the script returns a boolean, routed as `True` / `False`; anything else is `Failure`.

use serde::Deserialize;

use super::{BuildCtx, EngineServices, Outcome, Relation, RuleNode};
use crate::domain::Msg;
use crate::engine::EngineError;
use crate::engine::script::Script;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `.rhai` file, relative to the rules directory.
    pub script: String,
}

pub struct ScriptFilter {
    script: Script,
}

impl ScriptFilter {
    pub fn build(config: Config, ctx: &BuildCtx<'_>) -> Result<Self, String> {
        Ok(Self {
            script: ctx.script(&config.script)?,
        })
    }
}

impl RuleNode for ScriptFilter {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        _services: &S,
    ) -> Result<Outcome, EngineError> {
        Ok(match self.script.run(&msg).await {
            Ok(result) => match result.as_bool() {
                Ok(true) => Outcome::on(msg, Relation::True),
                Ok(false) => Outcome::on(msg, Relation::False),
                Err(_) => {
                    let error = format!("Wrong result type: {}", result.type_name());
                    Outcome::failure(msg, error)
                }
            },
            Err(e) => Outcome::failure(msg, e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::nodes::Relations;
    use crate::engine::testing::{FakeServices, msg, script};

    async fn run(text: &str, data: &str) -> (Relation, Option<String>) {
        let node = ScriptFilter {
            script: script(text),
        };
        match node
            .process(
                msg("POST_TELEMETRY_REQUEST", data),
                &FakeServices::default(),
            )
            .await
        {
            Ok(Outcome::One(m, Relations::One(r))) => (r, m.metadata.get("error").cloned()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn boolean_results_route_true_false() {
        assert_eq!(
            run("msg.temperature > 20", r#"{"temperature":25}"#).await.0,
            Relation::True
        );
        assert_eq!(
            run("return msg.temperature > 20;", r#"{"temperature":5}"#)
                .await
                .0,
            Relation::False
        );
    }

    #[tokio::test]
    async fn other_results_and_errors_fail() {
        let (r, e) = run("42", "{}").await;
        assert_eq!(r, Relation::Failure);
        assert!(e.unwrap().starts_with("Wrong result type"));
        let (r, e) = run("msg.a.b.c > 1", "{}").await;
        assert_eq!(r, Relation::Failure);
        assert!(!e.unwrap().is_empty());
    }
}
