//! X509_CERTIFICATE_CHAIN provisioning settings: the CA certificate a profile trusts (its
//! `provisionDeviceSecret`, whose hash is the profile's provisioning key), the pattern that names
//! a device after its certificate's CN, and whether unknown devices are created.

use serde_json::{Map, Value};

use crate::domain::x509::DeviceCertificate;

pub const TYPE: &str = "X509_CERTIFICATE_CHAIN";
/// ThingsBoard's default pattern: the whole CN names the device.
const DEFAULT_PATTERN: &str = "(.*)";

/// The chain settings of a saved profile.
#[derive(Clone, Debug)]
pub struct X509Chain {
    pub ca: DeviceCertificate,
    pub pattern: regex::Regex,
    pub allow_create: bool,
}

impl X509Chain {
    /// The settings when the profile's provision type is X509_CERTIFICATE_CHAIN and they are usable.
    pub fn of(profile_data: &Value) -> Option<Self> {
        let p = profile_data.get("provisionConfiguration")?;
        if p.get("type").and_then(Value::as_str) != Some(TYPE) {
            return None;
        }
        let ca = DeviceCertificate::from_text(p.get("provisionDeviceSecret")?.as_str()?).ok()?;
        let pattern = p
            .get("certificateRegExPattern")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_PATTERN);
        Some(Self {
            ca,
            pattern: regex::Regex::new(pattern).ok()?,
            allow_create: p
                .get("allowCreateNewDevicesByX509Certificate")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The device name: the first group of the pattern found in the CN; None when it does not
    /// match or the group is empty.
    pub fn device_name(&self, common_name: &str) -> Option<String> {
        let captures = self.pattern.captures(common_name)?;
        let name = captures.get(1)?.as_str().trim();
        (!name.is_empty()).then(|| name.to_owned())
    }
}

/// Checks and completes the `provisionConfiguration` of a chain profile: the CA must be a
/// certificate, the pattern a regular expression with a group, the flag a boolean.
pub fn normalise(p: &mut Map<String, Value>) -> Result<(), String> {
    let Some(Value::String(secret)) = p.get("provisionDeviceSecret") else {
        return Err(
            "X509_CERTIFICATE_CHAIN provisioning needs the CA certificate (PEM) in provisionDeviceSecret!"
                .to_owned(),
        );
    };
    DeviceCertificate::from_text(secret)
        .map_err(|e| format!("Failed to parse the X509 CA certificate: {e}"))?;
    let pattern = match p.get("certificateRegExPattern") {
        None | Some(Value::Null) => DEFAULT_PATTERN.to_owned(),
        Some(Value::String(s)) if s.trim().is_empty() => DEFAULT_PATTERN.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("certificateRegExPattern should be a string!".to_owned()),
    };
    let compiled = regex::Regex::new(&pattern).map_err(|e| {
        format!("certificateRegExPattern '{pattern}' is not a valid regular expression: {e}")
    })?;
    if compiled.captures_len() < 2 {
        return Err(format!(
            "certificateRegExPattern '{pattern}' needs a group that captures the device name!"
        ));
    }
    p.insert("certificateRegExPattern".into(), Value::String(pattern));
    match p.get("allowCreateNewDevicesByX509Certificate") {
        None | Some(Value::Null) => {
            p.insert(
                "allowCreateNewDevicesByX509Certificate".into(),
                Value::Bool(false),
            );
        }
        Some(Value::Bool(_)) => {}
        Some(_) => {
            return Err("allowCreateNewDevicesByX509Certificate should be a boolean!".to_owned());
        }
    }
    Ok(())
}

/// The provisioning key of a chain profile: the credentials id (SHA3-256 of the normalised body)
/// of its CA certificate, the first one when the secret holds several.
pub fn provision_key(profile_data: &Value) -> Option<String> {
    X509Chain::of(profile_data).map(|c| c.ca.credentials_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn garbage_ca_bad_pattern_and_names() {
        let mut p = json!({"type": TYPE, "provisionDeviceSecret": "nope"});
        assert!(normalise(p.as_object_mut().unwrap()).is_err());
        let mut p = json!({"type": TYPE});
        assert!(normalise(p.as_object_mut().unwrap()).is_err());
        let chain = X509Chain {
            ca: DeviceCertificate::from_der(
                rcgen::generate_simple_self_signed(vec!["ca".into()])
                    .unwrap()
                    .cert
                    .der()
                    .to_vec(),
            )
            .unwrap(),
            pattern: regex::Regex::new("^dev-(.+)$").unwrap(),
            allow_create: false,
        };
        assert_eq!(chain.device_name("dev-42").as_deref(), Some("42"));
        assert_eq!(chain.device_name("other"), None);
    }
}
