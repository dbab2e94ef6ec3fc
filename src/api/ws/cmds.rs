//! The WebSocket's command messages as ThingsBoard's widgets send them (the legacy
//! `tsSubCmds`/`attrSubCmds`/`historyCmds` arrays and the newer `authCmd` + typed `cmds`), and the
//! update JSON sent back.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// ThingsBoard's `SubscriptionErrorCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Internal = 1,
    BadRequest = 2,
    Unauthorized = 3,
}

/// One message from the client: any of the arrays may be present.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wrapper {
    pub auth_cmd: Option<AuthCmd>,
    #[serde(default)]
    pub cmds: Vec<Value>,
    #[serde(default)]
    pub ts_sub_cmds: Vec<SubCmd>,
    #[serde(default)]
    pub attr_sub_cmds: Vec<SubCmd>,
    #[serde(default)]
    pub history_cmds: Vec<SubCmd>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCmd {
    pub token: String,
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdKind {
    /// Latest values, then every new value (`tsSubCmds`, `TIMESERIES`).
    Timeseries,
    /// Attributes of one scope or all, then every change (`attrSubCmds`, `ATTRIBUTES`).
    Attributes,
    /// A one-shot history query (`historyCmds`, `TIMESERIES_HISTORY`).
    History,
}

/// The fields shared by the subscription and history commands; unknown fields are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubCmd {
    pub cmd_id: i32,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Comma-separated; empty or absent means every key.
    pub keys: Option<String>,
    pub scope: Option<String>,
    pub unsubscribe: bool,
    pub start_ts: Option<i64>,
    pub end_ts: Option<i64>,
    pub time_window: Option<i64>,
    pub interval: Option<i64>,
    pub limit: Option<i64>,
    pub agg: Option<String>,
}

impl SubCmd {
    /// The requested keys; None for all.
    pub fn key_list(&self) -> Option<Vec<String>> {
        let keys: Vec<String> = self
            .keys
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        (!keys.is_empty()).then_some(keys)
    }
}

/// A command that could not be read: its id (when known) and why.
pub struct BadCmd {
    pub cmd_id: i32,
    pub error: String,
}

impl Wrapper {
    /// Every command of the message, in order: legacy arrays first, then `cmds`.
    pub fn commands(self) -> Vec<Result<(CmdKind, SubCmd), BadCmd>> {
        let legacy = self
            .ts_sub_cmds
            .into_iter()
            .map(|c| Ok((CmdKind::Timeseries, c)))
            .chain(
                self.attr_sub_cmds
                    .into_iter()
                    .map(|c| Ok((CmdKind::Attributes, c))),
            )
            .chain(
                self.history_cmds
                    .into_iter()
                    .map(|c| Ok((CmdKind::History, c))),
            );
        legacy.chain(self.cmds.into_iter().map(typed)).collect()
    }
}

/// A `{"type": ..., ...}` command of the newer format.
fn typed(value: Value) -> Result<(CmdKind, SubCmd), BadCmd> {
    let cmd_id = value
        .get("cmdId")
        .and_then(Value::as_i64)
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    let bad = |error: String| BadCmd { cmd_id, error };
    let kind = match value.get("type").and_then(Value::as_str) {
        Some("TIMESERIES") => CmdKind::Timeseries,
        Some("ATTRIBUTES") => CmdKind::Attributes,
        Some("TIMESERIES_HISTORY") => CmdKind::History,
        Some(other) => return Err(bad(format!("Unsupported command type: {other}"))),
        None => return Err(bad("Command type is missing".to_owned())),
    };
    let cmd = serde_json::from_value(value).map_err(|e| bad(format!("Invalid command: {e}")))?;
    Ok((kind, cmd))
}

/// `[[ts, "value"], ...]` per key.
pub type Data = Map<String, Value>;

/// Adds one point to `data`.
pub fn push_point(data: &mut Data, key: &str, ts: i64, value: &str) {
    let entry = data
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(points) = entry {
        points.push(json!([ts, value]));
    }
}

/// The update a subscription or history command gets (`TelemetrySubscriptionUpdate`); time-series
/// updates also carry `latestValues` (each key's newest ts).
pub fn update(cmd_id: i32, data: Data, with_latest: bool) -> String {
    let mut out = Map::new();
    out.insert("subscriptionId".to_owned(), cmd_id.into());
    out.insert("errorCode".to_owned(), 0.into());
    out.insert("errorMsg".to_owned(), Value::Null);
    if with_latest {
        let latest: Map<String, Value> = data
            .iter()
            .map(|(k, points)| {
                let ts = points
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get(0).and_then(Value::as_i64))
                    .max()
                    .unwrap_or(0);
                (k.clone(), ts.into())
            })
            .collect();
        out.insert("data".to_owned(), Value::Object(data));
        out.insert("latestValues".to_owned(), Value::Object(latest));
    } else {
        out.insert("data".to_owned(), Value::Object(data));
    }
    Value::Object(out).to_string()
}

pub fn error(cmd_id: i32, code: ErrorCode, msg: &str) -> String {
    json!({
        "subscriptionId": cmd_id,
        "errorCode": code as i32,
        "errorMsg": msg,
        "data": null,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_parse_and_unknown_types_are_reported() {
        let w: Wrapper = serde_json::from_str(
            r#"{"tsSubCmds":[{"cmdId":1,"entityType":"DEVICE","entityId":"x","keys":"a, b","type":"TIMESERIES"}],
                "authCmd":{"cmdId":0,"token":"t"},
                "cmds":[{"type":"ATTRIBUTES","cmdId":2,"scope":"SHARED_SCOPE"},{"type":"ENTITY_DATA","cmdId":3}]}"#,
        )
        .unwrap();
        assert_eq!(w.auth_cmd.as_ref().unwrap().token, "t");
        let cmds = w.commands();
        assert_eq!(cmds.len(), 3);
        let (kind, ts) = cmds[0].as_ref().ok().unwrap();
        assert_eq!(*kind, CmdKind::Timeseries);
        assert_eq!(ts.key_list().unwrap(), ["a", "b"]);
        let (kind, attr) = cmds[1].as_ref().ok().unwrap();
        assert_eq!(
            (*kind, attr.scope.as_deref()),
            (CmdKind::Attributes, Some("SHARED_SCOPE"))
        );
        assert!(attr.key_list().is_none());
        let bad = cmds[2].as_ref().err().unwrap();
        assert_eq!(bad.cmd_id, 3);
        assert!(bad.error.contains("ENTITY_DATA"));
    }

    #[test]
    fn updates_render_as_thingsboard_does() {
        let mut data = Data::new();
        push_point(&mut data, "t", 5, "21.5");
        push_point(&mut data, "t", 7, "22.0");
        let v: Value = serde_json::from_str(&update(4, data, true)).unwrap();
        assert_eq!(
            v,
            json!({"subscriptionId":4,"errorCode":0,"errorMsg":null,
                   "data":{"t":[[5,"21.5"],[7,"22.0"]]},"latestValues":{"t":7}})
        );
        let e: Value = serde_json::from_str(&error(2, ErrorCode::BadRequest, "no")).unwrap();
        assert_eq!(e["errorCode"], 2);
    }
}
