//! Script switch: the script returns a relation name or an array of names; the message leaves on each.

use rhai::Dynamic;
use serde::Deserialize;

use super::{BuildCtx, EngineServices, Outcome, Relation, Relations, RuleNode};
use crate::domain::Msg;
use crate::engine::EngineError;
use crate::engine::script::Script;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `.rhai` file, relative to the rules directory.
    pub script: String,
}

pub struct ScriptSwitch {
    script: Script,
}

impl ScriptSwitch {
    pub fn build(config: Config, ctx: &BuildCtx<'_>) -> Result<Self, String> {
        Ok(Self {
            script: ctx.script(&config.script)?,
        })
    }
}

impl RuleNode for ScriptSwitch {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        _services: &S,
    ) -> Result<Outcome, EngineError> {
        Ok(
            match self.script.run(&msg).await.and_then(|r| relations(&r)) {
                Ok(rels) => Outcome::One(msg, rels),
                Err(e) => Outcome::failure(msg, e),
            },
        )
    }
}

/// A string, or an array of strings (empty: no route).
fn relations(result: &Dynamic) -> Result<Relations, String> {
    if let Ok(name) = result.as_immutable_string_ref() {
        return Ok(Relations::One(Relation::Named(name.as_str().to_owned())));
    }
    let Ok(items) = result.as_array_ref() else {
        return Err(format!("Wrong result type: {}", result.type_name()));
    };
    items
        .iter()
        .map(|item| match item.as_immutable_string_ref() {
            Ok(name) => Ok(Relation::Named(name.as_str().to_owned())),
            Err(_) => Err(format!(
                "Wrong result type: array element is {}",
                item.type_name()
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Relations::Many)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{FakeServices, msg, script};

    async fn run(text: &str) -> Outcome {
        let node = ScriptSwitch {
            script: script(text),
        };
        match node
            .process(
                msg("POST_TELEMETRY_REQUEST", "{}"),
                &FakeServices::default(),
            )
            .await
        {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    fn names(o: &Outcome) -> Vec<String> {
        match o {
            Outcome::One(_, rels) => rels
                .as_slice()
                .iter()
                .map(|r| r.name().to_owned())
                .collect(),
            Outcome::Many(_) => panic!("switch never fans out"),
        }
    }

    #[tokio::test]
    async fn string_or_array_of_strings() {
        assert_eq!(names(&run(r#""hot""#).await), ["hot"]);
        assert_eq!(
            names(
                &run(
                    r#"if msgType == "POST_TELEMETRY_REQUEST" { ["one", "nine"] } else { ["two"] }"#
                )
                .await
            ),
            ["one", "nine"]
        );
        assert!(names(&run("[]").await).is_empty());
    }

    #[tokio::test]
    async fn wrong_types_fail() {
        assert!(run("1").await.is_failure());
        assert!(run(r#"["a", 2]"#).await.is_failure());
    }
}
