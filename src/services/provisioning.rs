//! Device provisioning, shared by MQTT (`/provision/request`) and HTTP (`POST /api/v1/provision`):
//! a device names a profile's provisioning key and secret and gets credentials, creating the
//! device (ALLOW_CREATE_NEW_DEVICES) or finding one made beforehand (CHECK_PRE_PROVISIONED_DEVICES).

use serde_json::{Map, Value, json};

use super::Services;
use crate::domain::credentials::MqttBasic;
use crate::domain::profile::{ProvisionType, Provisioning};
use crate::domain::x509::DeviceCertificate;
use crate::domain::{
    AttributeScope, Device, DeviceCredentials, DeviceId, DeviceProfile, Kv, KvValue, StorageError,
    now_ms,
};

pub const NOT_FOUND_MSG: &str = "Provision data was not found!";
pub const FAILURE_MSG: &str = "Failed to provision device!";
/// The server attribute that marks a provisioned device.
const PROVISION_STATE: &str = "provisionState";
/// Device names and credential fields are at most this long.
const MAX_FIELD: usize = 255;

/// A request the provisioning API does not accept at all (MQTT closes with `0x83`, HTTP answers 400).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("malformed provision request: {0}")]
    Malformed(String),
    #[error("provisioning failed: {0}")]
    Storage(#[from] StorageError),
}

/// The credentials a request asks for.
enum Wanted {
    Token(Option<String>),
    Basic(MqttBasic),
    Certificate(DeviceCertificate),
}

struct Request {
    key: String,
    secret: String,
    name: Option<String>,
    credentials: Wanted,
    gateway: bool,
}

/// A string field: absent is None, JSON null or another type is malformed.
fn field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ProvisionError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_FIELD => Err(ProvisionError::Malformed(format!(
            "{name} is longer than {MAX_FIELD} bytes"
        ))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ProvisionError::Malformed(format!(
            "{name} must be a string, not {other}"
        ))),
    }
}

fn parse(body: &Value) -> Result<Request, ProvisionError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ProvisionError::Malformed("the request must be a JSON object".into()))?;
    let required = |name: &str| {
        field(obj, name)?.ok_or_else(|| ProvisionError::Malformed(format!("{name} is missing")))
    };
    let key = required("provisionDeviceKey")?;
    let secret = required("provisionDeviceSecret")?;
    let credentials = match field(obj, "credentialsType")?.as_deref() {
        None | Some("ACCESS_TOKEN") => Wanted::Token(field(obj, "token")?),
        Some("MQTT_BASIC") => {
            let basic = MqttBasic {
                client_id: field(obj, "clientId")?,
                user_name: field(obj, "username")?,
                password: field(obj, "password")?,
            };
            // The same rules as credentials saved over REST.
            MqttBasic::parse(&basic.to_json())
                .map_err(|e| ProvisionError::Malformed(e.message().to_owned()))?;
            Wanted::Basic(basic)
        }
        Some("X509_CERTIFICATE") => {
            let text = obj.get("hash").and_then(Value::as_str).ok_or_else(|| {
                ProvisionError::Malformed("hash (the device certificate) is missing".into())
            })?;
            let cert = DeviceCertificate::from_text(text)
                .map_err(|e| ProvisionError::Malformed(format!("invalid certificate: {e}")))?;
            Wanted::Certificate(cert)
        }
        Some(other) => {
            return Err(ProvisionError::Malformed(format!(
                "unknown credentialsType {other}"
            )));
        }
    };
    let gateway = match obj.get("gateway") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ProvisionError::Malformed(format!(
                "gateway must be a boolean, not {other}"
            )));
        }
    };
    Ok(Request {
        key,
        secret,
        name: field(obj, "deviceName")?.map(|n| n.trim().to_owned()),
        credentials,
        gateway,
    })
}

fn not_found() -> Value {
    json!({"errorMsg": NOT_FOUND_MSG, "status": "NOT_FOUND"})
}

fn failure() -> Value {
    json!({"errorMsg": FAILURE_MSG, "status": "FAILURE"})
}

/// ThingsBoard's success answer for stored credentials.
pub fn success(c: &DeviceCredentials) -> Value {
    let value = match c.credentials_type.as_str() {
        "ACCESS_TOKEN" => Value::String(c.credentials_id.clone()),
        "MQTT_BASIC" => {
            let basic = c
                .credentials_value
                .as_deref()
                .and_then(|v| MqttBasic::parse(v).ok())
                .unwrap_or_default();
            json!({"clientId": basic.client_id, "userName": basic.user_name, "password": basic.password})
        }
        _ => c
            .credentials_value
            .clone()
            .map_or(Value::Null, Value::String),
    };
    json!({"credentialsValue": value, "credentialsType": c.credentials_type, "status": "SUCCESS"})
}

impl Services {
    /// Answers a provision request with ThingsBoard's JSON (`SUCCESS`, `NOT_FOUND` or `FAILURE`).
    pub async fn provision(&self, body: &Value) -> Result<Value, ProvisionError> {
        let request = parse(body)?;
        if request.key.is_empty() || request.secret.is_empty() {
            return Ok(not_found());
        }
        let Some(profile) = self
            .store
            .find_profile_by_provision_key(&request.key)
            .await?
        else {
            return Ok(not_found());
        };
        let settings = Provisioning::of(&profile.profile_data);
        if settings.secret.as_deref() != Some(request.secret.as_str()) {
            return Ok(not_found());
        }
        let answer = match settings.kind {
            // Chain profiles provision at the TLS CONNECT, not through this API.
            ProvisionType::Disabled | ProvisionType::X509CertificateChain => {
                return Ok(not_found());
            }
            ProvisionType::AllowCreateNewDevices => self.create_new(&profile, request).await?,
            ProvisionType::CheckPreProvisionedDevices => {
                self.pre_provisioned(&profile, request).await?
            }
        };
        Ok(match answer {
            Some((device, credentials)) => {
                self.mark_provisioned(device).await?;
                tracing::info!(device = %device, profile = %profile.name, "device provisioned");
                success(&credentials)
            }
            None => failure(),
        })
    }

    /// ALLOW_CREATE_NEW_DEVICES: a new device of the profile with the requested credentials.
    async fn create_new(
        &self,
        profile: &DeviceProfile,
        request: Request,
    ) -> Result<Option<(DeviceId, DeviceCredentials)>, StorageError> {
        let name = match request.name {
            Some(n) if n.is_empty() => return Ok(None),
            Some(n) => n,
            None => super::accounts::random_alphanumeric(20),
        };
        let (kind, id, value) = match request.credentials {
            Wanted::Token(token) => (
                "ACCESS_TOKEN",
                token
                    .filter(|t| !t.trim().is_empty() && !t.chars().any(char::is_control))
                    .unwrap_or_else(|| super::accounts::random_alphanumeric(20)),
                None,
            ),
            Wanted::Basic(basic) => ("MQTT_BASIC", basic.credentials_id(), Some(basic.to_json())),
            Wanted::Certificate(cert) => {
                ("X509_CERTIFICATE", cert.credentials_id(), Some(cert.body))
            }
        };
        self.create_with_credentials(profile, name, request.gateway, kind, id, value)
            .await
    }

    /// A new device of the profile with these credentials; None when the name or the
    /// credentials are taken.
    pub(super) async fn create_with_credentials(
        &self,
        profile: &DeviceProfile,
        name: String,
        gateway: bool,
        kind: &str,
        id: String,
        value: Option<String>,
    ) -> Result<Option<(DeviceId, DeviceCredentials)>, StorageError> {
        if self
            .store
            .find_device_by_name(profile.tenant_id, &name)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let device = Device::new_of_profile(
            profile,
            name,
            json!({"gateway": gateway, "description": ""}),
            now_ms(),
        );
        let credentials = DeviceCredentials::new_of(&device, kind, id, value);
        // Device and credentials in one transaction: taken credentials create nothing.
        match self.store.create_device(&device, &credentials).await {
            Ok(()) => {}
            Err(StorageError::Conflict(reason)) => {
                tracing::info!(profile = %profile.name, reason, "device not provisioned");
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        self.auth_cache.invalidate();
        // A profile with a package: the new device is told, as any device created over REST.
        super::ota_state::device_saved(self, None, &device).await;
        Ok(Some((device.id, credentials)))
    }

    /// CHECK_PRE_PROVISIONED_DEVICES: the device of the profile with that name, not provisioned
    /// yet; its existing credentials.
    async fn pre_provisioned(
        &self,
        profile: &DeviceProfile,
        request: Request,
    ) -> Result<Option<(DeviceId, DeviceCredentials)>, StorageError> {
        let Some(name) = request.name.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let Some(device) = self
            .store
            .find_device_by_name(profile.tenant_id, &name)
            .await?
        else {
            return Ok(None);
        };
        if device.profile_id != profile.id {
            return Ok(None);
        }
        let keys = [PROVISION_STATE.to_owned()];
        let state = self
            .store
            .find_attributes(device.id.0, AttributeScope::Server, Some(&keys))
            .await?;
        if !state.is_empty() {
            return Ok(None);
        }
        Ok(self
            .store
            .get_credentials(device.id)
            .await?
            .map(|c| (device.id, c)))
    }

    pub(super) async fn mark_provisioned(&self, device: DeviceId) -> Result<(), StorageError> {
        let kv = Kv {
            key: PROVISION_STATE.to_owned(),
            value: KvValue::Str("provisioned".to_owned()),
        };
        self.save_attributes(device.0, AttributeScope::Server, vec![kv], now_ms())
            .await
    }
}
