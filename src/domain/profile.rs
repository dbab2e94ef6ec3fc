//! Device-profile settings: ThingsBoard's `profileData` checked and completed when a profile is
//! saved (`normalise`), and the typed MQTT transport and provisioning settings read from it.

pub mod mqtt;
pub mod payload_type;
pub mod proto;
pub mod topic;
pub mod x509_chain;

use serde_json::{Map, Value, json};

pub use mqtt::{MqttSettings, PayloadCodec};
pub use topic::TopicFilter;

pub const DEFAULT_TELEMETRY_TOPIC: &str = "v1/devices/me/telemetry";
pub const DEFAULT_ATTRIBUTES_TOPIC: &str = "v1/devices/me/attributes";

/// The `profileData` of a profile with DEFAULT transport and provisioning disabled.
pub fn default_profile_data() -> Value {
    json!({
        "configuration": {"type": "DEFAULT"},
        "transportConfiguration": {"type": "DEFAULT"},
        "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": null},
        "alarms": null,
    })
}

/// How devices of a profile may provision themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisionType {
    Disabled,
    AllowCreateNewDevices,
    CheckPreProvisionedDevices,
    /// Devices are found or created by their TLS client certificate, signed by the profile's CA.
    X509CertificateChain,
}

impl ProvisionType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DISABLED" => Self::Disabled,
            "ALLOW_CREATE_NEW_DEVICES" => Self::AllowCreateNewDevices,
            "CHECK_PRE_PROVISIONED_DEVICES" => Self::CheckPreProvisionedDevices,
            x509_chain::TYPE => Self::X509CertificateChain,
            _ => return None,
        })
    }
}

/// Checks a `profileData` body and completes it with ThingsBoard's defaults. `provision_type` is
/// the profile's top-level `provisionType`: it names the provisioning type when the body has no
/// `provisionConfiguration`, and must agree with it when both are given. The error is the
/// message of a 400.
pub fn normalise(data: Option<&Value>, provision_type: Option<&str>) -> Result<Value, String> {
    let mut out = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err("Device profile data should be an object!".to_owned()),
    };
    let configuration = section(&out, "configuration", "DEFAULT")?;
    if configuration.get("type").and_then(Value::as_str) != Some("DEFAULT") {
        return Err("Device profile configuration type should be DEFAULT!".to_owned());
    }
    out.insert("configuration".into(), Value::Object(configuration));
    let transport = section(&out, "transportConfiguration", "DEFAULT")?;
    let transport = normalise_transport(transport)?;
    out.insert("transportConfiguration".into(), Value::Object(transport));
    let provision = match (out.get("provisionConfiguration"), provision_type) {
        (None | Some(Value::Null), Some(t)) => {
            json!({"type": t}).as_object().cloned().unwrap_or_default()
        }
        _ => section(&out, "provisionConfiguration", "DISABLED")?,
    };
    let provision = normalise_provision(provision, provision_type)?;
    out.insert("provisionConfiguration".into(), Value::Object(provision));
    out.entry("alarms").or_insert(Value::Null);
    Ok(Value::Object(out))
}

/// An object part of the body keyed by `type`, `{"type": default}` when absent.
fn section(
    data: &Map<String, Value>,
    name: &str,
    default: &str,
) -> Result<Map<String, Value>, String> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(json!({"type": default})
            .as_object()
            .cloned()
            .unwrap_or_default()),
        Some(Value::Object(o)) if o.get("type").is_some_and(Value::is_string) => Ok(o.clone()),
        Some(_) => Err(format!(
            "Device profile {name} should be an object with a \"type\"!"
        )),
    }
}

fn normalise_transport(mut t: Map<String, Value>) -> Result<Map<String, Value>, String> {
    match t.get("type").and_then(Value::as_str) {
        Some("DEFAULT") => Ok(t),
        Some("MQTT") => {
            for (field, what) in [
                ("deviceTelemetryTopic", "telemetry"),
                ("deviceAttributesTopic", "attributes"),
                ("deviceAttributesSubscribeTopic", "attributes subscribe"),
            ] {
                let topic = match t.get(field) {
                    None | Some(Value::Null) => default_topic(field),
                    Some(Value::String(s)) if s.trim().is_empty() => default_topic(field),
                    Some(Value::String(s)) => s.as_str(),
                    Some(_) => {
                        return Err(format!(
                            "[Transport Configuration] {field} should be a string!"
                        ));
                    }
                }
                .to_owned();
                TopicFilter::parse(&topic).map_err(|e| {
                    format!("[Transport Configuration] invalid {what} topic filter '{topic}': {e}")
                })?;
                t.insert(field.into(), Value::String(topic));
            }
            for flag in [
                "sendAckOnValidationException",
                "sendSharedAttributesOnSubscribe",
                "sparkplug",
            ] {
                match t.get(flag) {
                    None | Some(Value::Null) => {
                        t.insert(flag.into(), Value::Bool(false));
                    }
                    Some(Value::Bool(_)) => {}
                    Some(_) => {
                        return Err(format!(
                            "[Transport Configuration] {flag} should be a boolean!"
                        ));
                    }
                }
            }
            if t.get("sparkplug") == Some(&Value::Bool(true)) {
                return Err("[Transport Configuration] Sparkplug B is not supported".to_owned());
            }
            t.entry("sparkplugAttributesMetricNames")
                .or_insert(json!([]));
            let payload = match t.get("transportPayloadTypeConfiguration") {
                None | Some(Value::Null) => json!({"transportPayloadType": "JSON"}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => {
                    return Err("[Transport Configuration] transportPayloadTypeConfiguration should be an object!".to_owned());
                }
            };
            let payload = payload_type::normalise(payload)?;
            t.insert("transportPayloadTypeConfiguration".into(), payload);
            Ok(t)
        }
        Some(other) => Err(format!(
            "[Transport Configuration] transport type {other} is not supported; use DEFAULT or MQTT"
        )),
        None => Err("Device profile transport type should be specified!".to_owned()),
    }
}

fn default_topic(field: &str) -> &'static str {
    if field == "deviceTelemetryTopic" {
        DEFAULT_TELEMETRY_TOPIC
    } else {
        DEFAULT_ATTRIBUTES_TOPIC
    }
}

fn normalise_provision(
    mut p: Map<String, Value>,
    top_level: Option<&str>,
) -> Result<Map<String, Value>, String> {
    let kind = p
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("DISABLED")
        .to_owned();
    if ProvisionType::parse(&kind).is_none() {
        return Err(format!(
            "Provision type {kind} is not supported; use DISABLED, ALLOW_CREATE_NEW_DEVICES, CHECK_PRE_PROVISIONED_DEVICES or X509_CERTIFICATE_CHAIN"
        ));
    }
    if let Some(top) = top_level
        && top != kind
    {
        return Err(format!(
            "Device profile provisionType {top} differs from its provisionConfiguration type {kind}!"
        ));
    }
    match p.get("provisionDeviceSecret") {
        None => {
            p.insert("provisionDeviceSecret".into(), Value::Null);
        }
        Some(Value::Null | Value::String(_)) => {}
        Some(_) => return Err("provisionDeviceSecret should be a string!".to_owned()),
    }
    if kind == x509_chain::TYPE {
        x509_chain::normalise(&mut p)?;
    }
    Ok(p)
}

/// Provisioning settings of a saved profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioning {
    pub kind: ProvisionType,
    pub secret: Option<String>,
}

impl Provisioning {
    pub fn of(profile_data: &Value) -> Self {
        let kind = profile_data
            .pointer("/provisionConfiguration/type")
            .and_then(Value::as_str)
            .and_then(ProvisionType::parse)
            .unwrap_or(ProvisionType::Disabled);
        let secret = profile_data
            .pointer("/provisionConfiguration/provisionDeviceSecret")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Self { kind, secret }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_data_is_the_default() {
        assert_eq!(normalise(None, None).unwrap(), default_profile_data());
        let d = normalise(None, Some("ALLOW_CREATE_NEW_DEVICES")).unwrap();
        assert_eq!(
            d["provisionConfiguration"],
            json!({"type": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceSecret": null})
        );
    }

    #[test]
    fn mqtt_topics_default_and_validate() {
        let d = normalise(
            Some(&json!({"transportConfiguration": {"type": "MQTT", "deviceTelemetryTopic": " "}})),
            None,
        )
        .unwrap();
        let t = &d["transportConfiguration"];
        assert_eq!(t["deviceTelemetryTopic"], DEFAULT_TELEMETRY_TOPIC);
        assert_eq!(
            t["deviceAttributesSubscribeTopic"],
            DEFAULT_ATTRIBUTES_TOPIC
        );
        assert_eq!(
            t["transportPayloadTypeConfiguration"],
            json!({"transportPayloadType": "JSON"})
        );
        assert_eq!(t["sendAckOnValidationException"], false);
        let bad = normalise(
            Some(
                &json!({"transportConfiguration": {"type": "MQTT", "deviceTelemetryTopic": "a/#/b"}}),
            ),
            None,
        );
        assert!(bad.unwrap_err().contains("telemetry topic filter 'a/#/b'"));
        assert!(
            normalise(
                Some(&json!({"transportConfiguration": {"type": "COAP"}})),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn provision_type_must_agree() {
        let data = json!({"provisionConfiguration": {"type": "CHECK_PRE_PROVISIONED_DEVICES", "provisionDeviceSecret": "s"}});
        assert!(normalise(Some(&data), Some("DISABLED")).is_err());
        let d = normalise(Some(&data), Some("CHECK_PRE_PROVISIONED_DEVICES")).unwrap();
        assert_eq!(
            Provisioning::of(&d),
            Provisioning {
                kind: ProvisionType::CheckPreProvisionedDevices,
                secret: Some("s".into())
            }
        );
        assert!(
            normalise(
                Some(&json!({"provisionConfiguration": {"type": "NOPE"}})),
                None
            )
            .is_err()
        );
    }
}
