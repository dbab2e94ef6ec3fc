//! Script transform: the script returns `#{msg, metadata, msgType}` (missing keys keep the original),
//! or an array of such maps to fan out into several messages.

use std::collections::BTreeMap;

use rhai::Dynamic;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{BuildCtx, EngineServices, Outcome, RuleNode};
use crate::domain::{Msg, MsgType};
use crate::engine::EngineError;
use crate::engine::script::{Script, dynamic_to_json, metadata_string};

const EMPTY: &str = "Message or messages list are empty!";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `.rhai` file, relative to the rules directory.
    pub script: String,
}

pub struct ScriptTransform {
    script: Script,
}

impl ScriptTransform {
    pub fn build(config: Config, ctx: &BuildCtx<'_>) -> Result<Self, String> {
        Ok(Self {
            script: ctx.script(&config.script)?,
        })
    }
}

impl RuleNode for ScriptTransform {
    async fn process<S: EngineServices>(
        &self,
        msg: Msg,
        _services: &S,
    ) -> Result<Outcome, EngineError> {
        Ok(match self.script.run(&msg).await {
            Ok(result) => apply(msg, &result),
            Err(e) => Outcome::failure(msg, e),
        })
    }
}

/// The parts of a message a script result replaces.
struct Changes {
    data: Option<Value>,
    metadata: Option<BTreeMap<String, String>>,
    msg_type: Option<MsgType>,
}

impl Changes {
    fn read(item: &Dynamic) -> Result<Self, String> {
        let Ok(map) = item.as_map_ref() else {
            return Err(format!("Wrong result type: {}", item.type_name()));
        };
        let data = map.get("msg").map(dynamic_to_json).transpose()?;
        let metadata = map.get("metadata").map(read_metadata).transpose()?;
        let msg_type = match map.get("msgType") {
            None => None,
            Some(t) if t.is_unit() => None,
            Some(t) => match t.as_immutable_string_ref() {
                Ok(s) if s.is_empty() => None,
                Ok(s) => Some(MsgType::parse(s.as_str())),
                Err(_) => return Err(format!("Wrong result type: msgType is {}", t.type_name())),
            },
        };
        Ok(Self {
            data,
            metadata,
            msg_type,
        })
    }

    fn apply(self, msg: &mut Msg) {
        if let Some(data) = self.data {
            msg.set_data(data);
        }
        if let Some(metadata) = self.metadata {
            msg.metadata = metadata.into();
        }
        if let Some(t) = self.msg_type {
            msg.msg_type = t;
        }
    }
}

/// Metadata replaces the original map; values are stringified, unit values dropped.
fn read_metadata(value: &Dynamic) -> Result<BTreeMap<String, String>, String> {
    let Ok(map) = value.as_map_ref() else {
        return Err(format!(
            "Wrong result type: metadata is {}",
            value.type_name()
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map.iter() {
        if let Some(s) = metadata_string(v)? {
            out.insert(k.to_string(), s);
        }
    }
    Ok(out)
}

fn apply(mut msg: Msg, result: &Dynamic) -> Outcome {
    if result.is_unit() {
        return Outcome::failure(msg, EMPTY);
    }
    let Ok(items) = result.as_array_ref() else {
        return match Changes::read(result) {
            Ok(changes) => {
                changes.apply(&mut msg);
                Outcome::success(msg)
            }
            Err(e) => Outcome::failure(msg, e),
        };
    };
    if items.is_empty() {
        return Outcome::failure(msg, EMPTY);
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter() {
        match Changes::read(item) {
            Ok(changes) => {
                let mut copy = msg.clone();
                copy.id = Uuid::new_v4();
                changes.apply(&mut copy);
                out.push(copy);
            }
            Err(e) => return Outcome::failure(msg, e),
        }
    }
    Outcome::Many(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::nodes::{Relation, Relations};
    use crate::engine::testing::{FakeServices, msg, script};

    async fn run(text: &str, data: &str) -> Outcome {
        let node = ScriptTransform {
            script: script(text),
        };
        let mut m = msg("POST_TELEMETRY_REQUEST", data);
        m.metadata.insert("deviceName".into(), "d1".into());
        match node.process(m, &FakeServices::default()).await {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    fn one(o: Outcome) -> Msg {
        match o {
            Outcome::One(m, Relations::One(Relation::Success)) => m,
            other => panic!("expected one Success, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn replaces_given_parts_and_keeps_the_rest() {
        let text = "msg.tempF = msg.tempC * 1.8 + 32; return #{msg: msg};";
        let m = one(run(text, r#"{"tempC":20}"#).await);
        assert_eq!(m.data().to_string(), r#"{"tempC":20,"tempF":68.0}"#);
        assert_eq!(m.metadata["deviceName"], "d1");
        assert_eq!(m.msg_type, MsgType::PostTelemetryRequest);
    }

    #[tokio::test]
    async fn metadata_replaces_and_is_stringified() {
        let text = r#"#{metadata: #{a: 1, b: 2.0, c: (), d: "x"}, msgType: "CUSTOM"}"#;
        let m = one(run(text, "{}").await);
        let pairs: Vec<_> = m.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(pairs, ["a=1", "b=2.0", "d=x"]);
        assert_eq!(m.msg_type, MsgType::Custom("CUSTOM".into()));
    }

    #[tokio::test]
    async fn array_fans_out_with_new_ids() {
        let text = r#"[#{msg: #{n: 1}}, #{msg: #{n: 2}}]"#;
        let Outcome::Many(msgs) = run(text, "{}").await else {
            panic!("expected fan-out");
        };
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].data()["n"], 2);
        assert_ne!(msgs[0].id, msgs[1].id);
    }

    #[tokio::test]
    async fn empty_and_wrong_results_fail() {
        for text in [
            "[]",
            "()",
            "42",
            "[#{msg: 1}, 5]",
            r#"#{metadata: "x"}"#,
            "#{msgType: 3}",
            "throw \"boom\"",
        ] {
            let o = run(text, "{}").await;
            assert!(o.is_failure(), "{text}: {o:?}");
        }
        let Outcome::One(m, _) = run("[]", "{}").await else {
            panic!()
        };
        assert_eq!(m.metadata["error"], EMPTY);
    }
}
