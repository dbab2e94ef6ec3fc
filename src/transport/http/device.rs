//! The device of one HTTP request: its access token checked through `device_auth` (its negative
//! cache) or accepted from memory (`auth_cache::AcceptedTokens`), its rate limits, and the device
//! API's outcomes as HTTP errors.

use std::sync::Arc;

use crate::api::error::ApiError;
use crate::domain::Device;
use crate::services::auth_cache::AuthCache;
use crate::services::device_auth::AuthResult;
use crate::state::AppState;
use crate::transport::limits::SessionLimits;
use crate::transport::uplink::{DeviceLink, Outcome, Processing};

/// An authenticated device for the duration of one request.
pub struct HttpDevice {
    pub state: Arc<AppState>,
    pub device: Device,
    pub limits: Arc<SessionLimits>,
    /// When the token was checked: a credentials change after it ends the device's long polls.
    pub authenticated_at: std::time::Instant,
}

impl HttpDevice {
    /// The device whose access token is `token`; an unknown one is 401, as in ThingsBoard.
    /// A token accepted a moment ago is accepted from memory while the device's credentials
    /// were not revoked since (`auth_cache::AcceptedTokens`). Every request counts as activity
    /// of the device.
    pub async fn authenticate(state: &Arc<AppState>, token: &str) -> Result<Self, ApiError> {
        let accepted = &state.services.auth_cache.accepted;
        let key = AuthCache::key("", Some(token), None);
        let cached = accepted.get(&key, |device, since| {
            !state.sessions.revoked_since(device.id, since)
        });
        let (device, authenticated_at) = match cached {
            Some(found) => found,
            None => {
                let started = std::time::Instant::now();
                match state.services.authenticate_token(token).await {
                    // Credentials changed while the lookup ran (as an MQTT CONNECT's).
                    AuthResult::Accepted(device)
                        if !state.sessions.revoked_since(device.id, started) =>
                    {
                        accepted.insert(key, (*device).clone(), started);
                        (*device, started)
                    }
                    AuthResult::Accepted(_)
                    | AuthResult::NoCredentials
                    | AuthResult::NotAuthorized => {
                        return Err(ApiError::Authentication(
                            "Invalid device access token".to_owned(),
                        ));
                    }
                    AuthResult::Unavailable(e) => {
                        return Err(ApiError::Database(format!(
                            "device access token lookup failed: {e}"
                        )));
                    }
                }
            }
        };
        state.services.device_state.activity(&device);
        Ok(Self {
            state: state.clone(),
            limits: state.device_limits.of(device.id),
            device,
            authenticated_at,
        })
    }

    /// The protocol-independent device API of this device.
    pub fn link(&self) -> DeviceLink<'_> {
        DeviceLink {
            state: &self.state,
            device: &self.device,
            limits: &self.limits,
            transport: "http",
            processing: Processing::Spawned,
        }
    }

    /// Charges one message to the device's `messages` limit (requests other than telemetry and
    /// attribute posts).
    pub fn admit_message(&self) -> Result<(), ApiError> {
        match self.limits.admit_message() {
            Ok(()) => Ok(()),
            Err(limit) => self.answer(Outcome::RateLimited(limit)),
        }
    }

    /// An outcome of the device API as the request's result.
    pub fn answer(&self, outcome: Outcome) -> Result<(), ApiError> {
        Err(match outcome {
            Outcome::Accepted => return Ok(()),
            Outcome::InvalidPayload(e) | Outcome::Malformed(e) => ApiError::BadRequest(e),
            Outcome::RateLimited(limit) => {
                metrics::counter!("ferroboard_rate_limited_total", "limit" => limit).increment(1);
                tracing::warn!(device = %self.device.id, name = %self.device.name, limit, "rate limit '{limit}' exceeded; HTTP request refused");
                ApiError::TooManyRequests(format!("Rate limit '{limit}' exceeded"), 1)
            }
            Outcome::Failed(e) => ApiError::Database(e),
            Outcome::TopicInvalid => {
                ApiError::NotFound(crate::api::error::ITEM_NOT_FOUND_MSG.to_owned())
            }
            Outcome::NotGateway => ApiError::PermissionDenied,
        })
    }
}
