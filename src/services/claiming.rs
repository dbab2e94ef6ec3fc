//! Device claiming (ThingsBoard's `ClaimDevicesServiceImpl`): a device opens a claim window with
//! a secret key; a customer user who names the device and the key within the window becomes its
//! owner. One implementation for the MQTT topic, the device HTTP route and the REST routes.

use serde_json::Value;

use super::Services;
use crate::config::AuthConfig;
use crate::domain::kv::KvValue;
use crate::domain::{AttributeScope, ClaimData, CustomerId, Device, Kv, StorageError, now_ms};

/// The server attribute that lets a device be claimed when claiming is not allowed by default.
pub const CLAIMING_ALLOWED: &str = "claimingAllowed";
/// The server attribute that may preset a device's claim data (`{"secretKey","expirationTime"}`).
pub const CLAIMING_DATA: &str = "claimingData";

/// A device's claim message: `{"secretKey": "...", "durationMs": 60000}`, both optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimRequest {
    pub secret_key: String,
    /// Not positive means the configured default (`auth.claim_duration_ms`).
    pub duration_ms: i64,
}

/// Parses a claim message; an empty payload is the defaults.
pub fn parse_request(payload: &[u8]) -> Result<ClaimRequest, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(ClaimRequest::default());
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("claim message is not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("claim message must be a JSON object".to_owned());
    };
    let secret_key = match obj.get("secretKey") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("secretKey must be a string".to_owned()),
    };
    if secret_key.chars().count() > 255 {
        return Err("secretKey is longer than 255 characters".to_owned());
    }
    let duration_ms = match obj.get("durationMs") {
        None | Some(Value::Null) => 0,
        // Numeric strings count, as ThingsBoard's JSON reader coerces them.
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
            .ok_or_else(|| "durationMs must be an integer".to_owned())?,
    };
    Ok(ClaimRequest {
        secret_key,
        duration_ms,
    })
}

/// Why a device's claim message opened no window.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the device already belongs to a customer")]
    AlreadyClaimed,
    #[error("claiming is not allowed for this device (server attribute claimingAllowed)")]
    NotAllowed,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a customer user's claim achieved (ThingsBoard's `ClaimResponse`).
#[derive(Debug, PartialEq)]
pub enum ClaimResult {
    /// The device now belongs to the customer.
    Success(Box<Device>),
    /// No window, an expired one, or the wrong key.
    Failure,
    /// The device already belongs to a customer.
    Claimed,
}

/// A server attribute of the device, if stored.
async fn server_attribute(
    services: &Services,
    device: &Device,
    key: &str,
) -> Result<Option<KvValue>, StorageError> {
    let keys = [key.to_owned()];
    Ok(services
        .store
        .find_attributes(device.id.0, AttributeScope::Server, Some(&keys))
        .await?
        .into_iter()
        .next()
        .map(|a| a.value))
}

/// Opens the device's claim window. An open window is kept as it is (ThingsBoard keeps the first
/// until it ends).
pub async fn register(
    services: &Services,
    config: &AuthConfig,
    device: &Device,
    request: &ClaimRequest,
) -> Result<ClaimData, RegisterError> {
    // The device as stored now: the session's copy may predate an assignment.
    let device = services
        .store
        .find_device(device.id)
        .await?
        .ok_or(StorageError::NotFound)?;
    if device.customer_id.is_some() {
        return Err(RegisterError::AlreadyClaimed);
    }
    if !config.claim_allowed_by_default
        && server_attribute(services, &device, CLAIMING_ALLOWED).await? != Some(KvValue::Bool(true))
    {
        return Err(RegisterError::NotAllowed);
    }
    let now = now_ms();
    if let Some(open) = services.store.get_claim(device.id).await?
        && open.expiration_time >= now
    {
        return Ok(open);
    }
    let duration = if request.duration_ms > 0 {
        request.duration_ms
    } else {
        i64::try_from(config.claim_duration_ms).unwrap_or(i64::MAX)
    };
    let claim = ClaimData {
        secret_key: request.secret_key.clone(),
        expiration_time: now.saturating_add(duration),
    };
    services.store.put_claim(device.id, &claim).await?;
    Ok(claim)
}

/// The device's claim data: its open window, else the preset server attribute `claimingData`.
/// The flag tells whether it is a stored window.
async fn claim_data(
    services: &Services,
    device: &Device,
) -> Result<Option<(ClaimData, bool)>, StorageError> {
    if let Some(claim) = services.store.get_claim(device.id).await? {
        return Ok(Some((claim, true)));
    }
    let Some(value) = server_attribute(services, device, CLAIMING_DATA).await? else {
        return Ok(None);
    };
    let parsed: Option<Value> = match value {
        KvValue::Json(text) | KvValue::Str(text) => serde_json::from_str(&text).ok(),
        _ => None,
    };
    let preset = parsed.and_then(|v| {
        Some(ClaimData {
            secret_key: v.get("secretKey")?.as_str()?.to_owned(),
            expiration_time: v.get("expirationTime")?.as_i64()?,
        })
    });
    if preset.is_none() {
        tracing::warn!(device = %device.id, "server attribute claimingData is not {{\"secretKey\",\"expirationTime\"}}: ignored");
    }
    Ok(preset.map(|c| (c, false)))
}

/// Removes what let the device be claimed: the window and the two server attributes.
async fn forget_claim(services: &Services, device: &Device) -> Result<(), StorageError> {
    services.store.delete_claim(device.id).await?;
    services
        .store
        .delete_attributes(
            device.id.0,
            AttributeScope::Server,
            &[CLAIMING_ALLOWED.to_owned(), CLAIMING_DATA.to_owned()],
        )
        .await?;
    Ok(())
}

/// A customer user claims `device` with `secret_key`.
pub async fn claim(
    services: &Services,
    device: &Device,
    customer: CustomerId,
    secret_key: &str,
) -> Result<ClaimResult, StorageError> {
    let Some((data, stored)) = claim_data(services, device).await? else {
        return Ok(if device.customer_id.is_some() {
            ClaimResult::Claimed
        } else {
            ClaimResult::Failure
        });
    };
    if now_ms() > data.expiration_time || data.secret_key != secret_key {
        // A failed attempt closes the window, as in ThingsBoard.
        if stored {
            services.store.delete_claim(device.id).await?;
        }
        tracing::info!(device = %device.id, "claim refused: the window has ended or the secret key is wrong");
        return Ok(ClaimResult::Failure);
    }
    if device.customer_id.is_some() || !services.store.claim_device(device.id, customer).await? {
        forget_claim(services, device).await?;
        return Ok(ClaimResult::Claimed);
    }
    forget_claim(services, device).await?;
    services.auth_cache.accepted.forget_device(device.id);
    let claimed = services
        .store
        .find_device(device.id)
        .await?
        .ok_or(StorageError::NotFound)?;
    tracing::info!(device = %device.id, customer = %customer, "device claimed");
    Ok(ClaimResult::Success(Box::new(claimed)))
}

/// Gives a claimed device back: it loses its customer and its window; when claiming is not
/// allowed by default, `claimingAllowed = true` is set again.
pub async fn reclaim(
    services: &Services,
    config: &AuthConfig,
    device: &Device,
) -> Result<(), StorageError> {
    services.store.delete_claim(device.id).await?;
    if device.customer_id.is_none() {
        return Ok(());
    }
    let mut unassigned = device.clone();
    unassigned.customer_id = None;
    services.store.update_device(&unassigned).await?;
    services.auth_cache.accepted.forget_device(device.id);
    if !config.claim_allowed_by_default {
        let allowed = Kv {
            key: CLAIMING_ALLOWED.to_owned(),
            value: KvValue::Bool(true),
        };
        services
            .save_attributes(device.id.0, AttributeScope::Server, vec![allowed], now_ms())
            .await?;
    }
    tracing::info!(device = %device.id, "device reclaimed: it has no customer now");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_messages_parse_with_thingsboards_defaults() {
        assert_eq!(parse_request(b"").unwrap(), ClaimRequest::default());
        assert_eq!(
            parse_request(br#"{"secretKey":"k","durationMs":60000}"#).unwrap(),
            ClaimRequest {
                secret_key: "k".into(),
                duration_ms: 60000
            }
        );
        assert_eq!(parse_request(b"{}").unwrap(), ClaimRequest::default());
        assert_eq!(
            parse_request(br#"{"secretKey":42,"durationMs":"5000"}"#).unwrap(),
            ClaimRequest {
                secret_key: "42".into(),
                duration_ms: 5000
            }
        );
        assert!(parse_request(b"[1]").is_err());
        assert!(parse_request(b"{\"durationMs\":\"soon\"}").is_err());
        assert!(parse_request(b"{not json").is_err());
    }
}
