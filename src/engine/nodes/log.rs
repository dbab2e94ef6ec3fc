//! Log: hands the message's text (an optional script's result, else a built-in format) to
//! `EngineServices::log`, which the server writes at INFO.

use serde::Deserialize;

use super::{BuildCtx, EngineServices, Outcome, RuleNode};
use crate::domain::Msg;
use crate::engine::EngineError;
use crate::engine::script::{Script, dynamic_to_json};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Optional `.rhai` file returning the text to log; without it a built-in format is used.
    #[serde(default)]
    pub script: Option<String>,
}

pub struct Log {
    node: String,
    script: Option<Script>,
}

impl Log {
    pub fn build(config: Config, ctx: &BuildCtx<'_>) -> Result<Self, String> {
        Ok(Self {
            node: ctx.node_id.to_owned(),
            script: config.script.map(|s| ctx.script(&s)).transpose()?,
        })
    }

    /// The script's text; non-strings are logged as JSON, as TBEL does.
    async fn text(script: &Script, msg: &Msg) -> Result<String, String> {
        let result = script.run(msg).await?;
        if let Ok(s) = result.as_immutable_string_ref() {
            return Ok(s.as_str().to_owned());
        }
        dynamic_to_json(&result).map(|v| v.to_string())
    }
}

impl RuleNode for Log {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        services: &S,
    ) -> Result<Outcome, EngineError> {
        let Some(script) = &self.script else {
            services.log(&self.node, &msg, None);
            return Ok(Outcome::success(msg));
        };
        Ok(match Self::text(script, &msg).await {
            Ok(text) => {
                services.log(&self.node, &msg, Some(&text));
                Outcome::success(msg)
            }
            Err(e) => Outcome::failure(msg, e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{FakeServices, msg, script};

    fn node(text: Option<&str>) -> Log {
        Log {
            node: "log".into(),
            script: text.map(script),
        }
    }

    #[tokio::test]
    async fn logs_and_succeeds() {
        let services = FakeServices::default();
        for text in [None, Some(r#""Incoming: " + msg.a"#), Some("#{a: msg.a}")] {
            let out = node(text)
                .process(msg("OTHER", r#"{"a":1}"#), &services)
                .await
                .unwrap();
            assert!(!out.is_failure());
        }
    }

    #[tokio::test]
    async fn script_errors_fail() {
        let out = node(Some("throw 1"))
            .process(msg("OTHER", "{}"), &FakeServices::default())
            .await;
        assert!(out.unwrap().is_failure());
    }
}
