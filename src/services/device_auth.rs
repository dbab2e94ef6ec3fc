//! Device authentication: the credential lookup of an MQTT CONNECT — access tokens, MQTT basic
//! credentials and X.509 client certificates — with outcomes the transport maps to its CONNACK codes.

use super::Services;
use crate::domain::credentials::sha3_hex;
use crate::domain::x509::DeviceCertificate;
use crate::domain::{Device, StorageError};
use crate::storage::DynStore;

/// The outcome of a CONNECT credential check.
#[derive(Debug)]
pub enum AuthResult {
    Accepted(Box<Device>),
    /// Empty or absent username and no client-id credential matched: v3 4 / v5 0x86.
    NoCredentials,
    /// A username was given but nothing accepts it: v3 5 / v5 0x87.
    NotAuthorized,
    /// The lookup failed inside the server: v3 3 / v5 0x88.
    Unavailable(StorageError),
}

/// What the CONNECT carried.
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The DER of the leaf certificate the TLS client presented, if any.
    pub certificate: Option<&'a [u8]>,
}

impl Services {
    /// Finds the device the CONNECT's credentials belong to.
    pub async fn authenticate_device(&self, creds: &Credentials<'_>) -> AuthResult {
        match check(&self.store, creds).await {
            Ok(r) => r,
            Err(e) => AuthResult::Unavailable(e),
        }
    }
}

async fn check(store: &DynStore, creds: &Credentials<'_>) -> Result<AuthResult, StorageError> {
    // A client certificate decides alone, as in ThingsBoard: username and password are not used.
    if let Some(der) = creds.certificate {
        return x509(store, der).await;
    }
    let username = creds.username.filter(|u| !u.is_empty());
    let Some(username) = username else {
        if creds.client_id.is_empty() {
            return Ok(AuthResult::NoCredentials);
        }
        return Ok(
            match basic(store, &sha3_hex(creds.client_id), creds).await? {
                Some(Ok(device)) => AuthResult::Accepted(Box::new(device)),
                _ => AuthResult::NoCredentials,
            },
        );
    };
    if !creds.client_id.is_empty() {
        let id = sha3_hex(&format!("{}|{username}", creds.client_id));
        match basic(store, &id, creds).await? {
            Some(Ok(device)) => return Ok(AuthResult::Accepted(Box::new(device))),
            Some(Err(BasicMismatch::Password)) => return Ok(AuthResult::NotAuthorized),
            _ => {}
        }
    }
    let Some((device, stored)) = store.find_by_credentials_id(username).await? else {
        return Ok(AuthResult::NotAuthorized);
    };
    Ok(match stored.credentials_type.as_str() {
        "ACCESS_TOKEN" => AuthResult::Accepted(Box::new(device)),
        "MQTT_BASIC" if validate_basic(stored.credentials_value.as_deref(), creds).is_ok() => {
            AuthResult::Accepted(Box::new(device))
        }
        _ => AuthResult::NotAuthorized,
    })
}

/// The device whose X509_CERTIFICATE credentials are this leaf certificate, within its validity.
async fn x509(store: &DynStore, der: &[u8]) -> Result<AuthResult, StorageError> {
    let cert = match DeviceCertificate::from_der(der.to_vec()) {
        Ok(cert) => cert,
        Err(e) => {
            tracing::info!(error = %e, "client certificate refused");
            return Ok(AuthResult::NotAuthorized);
        }
    };
    if let Err(e) = cert.check_validity_now() {
        tracing::info!(error = %e, "client certificate refused");
        return Ok(AuthResult::NotAuthorized);
    }
    Ok(
        match store.find_by_credentials_id(&cert.credentials_id()).await? {
            Some((device, stored)) if stored.credentials_type == "X509_CERTIFICATE" => {
                AuthResult::Accepted(Box::new(device))
            }
            _ => AuthResult::NotAuthorized,
        },
    )
}

enum BasicMismatch {
    Password,
    Other,
}

/// Looks up an MQTT_BASIC credential; None when absent or of another type.
async fn basic(
    store: &DynStore,
    credentials_id: &str,
    creds: &Credentials<'_>,
) -> Result<Option<Result<Device, BasicMismatch>>, StorageError> {
    let Some((device, stored)) = store.find_by_credentials_id(credentials_id).await? else {
        return Ok(None);
    };
    if stored.credentials_type != "MQTT_BASIC" {
        return Ok(None);
    }
    Ok(Some(
        validate_basic(stored.credentials_value.as_deref(), creds).map(|()| device),
    ))
}

/// Empty stored fields are wildcards; a stored password must be present and equal.
fn validate_basic(value: Option<&str>, creds: &Credentials<'_>) -> Result<(), BasicMismatch> {
    let parsed: serde_json::Value = value
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or(BasicMismatch::Other)?;
    let field = |name: &str| {
        parsed
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    if let Some(client_id) = field("clientId")
        && client_id != creds.client_id
    {
        return Err(BasicMismatch::Other);
    }
    if let Some(user) = field("userName")
        && Some(user) != creds.username
    {
        return Err(BasicMismatch::Other);
    }
    if let Some(password) = field("password")
        && creds.password != Some(password.as_bytes())
    {
        return Err(BasicMismatch::Password);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_validation_treats_empty_fields_as_wildcards() {
        let creds = Credentials {
            client_id: "c1",
            username: Some("u1"),
            password: Some(b"p1"),
            certificate: None,
        };
        let v = r#"{"clientId":"c1","userName":"u1","password":"p1"}"#;
        assert!(validate_basic(Some(v), &creds).is_ok());
        assert!(validate_basic(Some(r#"{"userName":"u1"}"#), &creds).is_ok());
        assert!(matches!(
            validate_basic(Some(r#"{"userName":"u1","password":"x"}"#), &creds),
            Err(BasicMismatch::Password)
        ));
        assert!(validate_basic(Some(r#"{"clientId":"other"}"#), &creds).is_err());
    }
}
