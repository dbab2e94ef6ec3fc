//! `ApiError`: every REST failure, rendered as ThingsBoard's error JSON or, inside
//! the telemetry handlers, as a bare text body. Also the extractors that turn axum's own
//! rejections into these errors, so no response ever leaves in axum's default format.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::StorageError;
use crate::domain::now_ms;

/// ThingsBoard's `ThingsboardErrorCode` values used here.
pub mod code {
    pub const GENERAL: u16 = 2;
    pub const AUTHENTICATION: u16 = 10;
    pub const JWT_TOKEN_EXPIRED: u16 = 11;
    pub const PERMISSION_DENIED: u16 = 20;
    pub const BAD_REQUEST_PARAMS: u16 = 31;
    pub const ITEM_NOT_FOUND: u16 = 32;
    pub const TOO_MANY_REQUESTS: u16 = 33;
    pub const VERSION_CONFLICT: u16 = 35;
    pub const DATABASE: u16 = 46;
}

pub const PERMISSION_DENIED_MSG: &str = "You don't have permission to perform this operation!";
pub const ITEM_NOT_FOUND_MSG: &str = "Requested item wasn't found!";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401/10, e.g. "Authentication failed" or "Invalid username or password".
    #[error("{0}")]
    Authentication(String),
    /// 401/11.
    #[error("Token has expired")]
    TokenExpired,
    /// 403/20.
    #[error("{PERMISSION_DENIED_MSG}")]
    PermissionDenied,
    /// 400/31: validation failures, duplicates, bad ids, bad parameters.
    #[error("{0}")]
    BadRequest(String),
    /// 404/32.
    #[error("{0}")]
    NotFound(String),
    /// 405 with errorCode 31.
    #[error("Request method is not supported")]
    MethodNotAllowed,
    /// 409/35: a stale optimistic-lock `version`.
    #[error("{0}")]
    VersionConflict(String),
    /// 413 with errorCode 31.
    #[error("Payload too large")]
    PayloadTooLarge,
    /// 429/33 with `Retry-After` (seconds).
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// 500/46; the detail is logged, never sent.
    #[error("Database error")]
    Database(String),
    /// 500/2.
    #[error("{0}")]
    General(String),
    /// A bare text body with this status (the asynchronous telemetry handlers).
    #[error("{1}")]
    Text(StatusCode, String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// A plain-text 400, as the telemetry handlers answer bad payloads.
    pub fn text_bad_request(msg: impl Into<String>) -> Self {
        Self::Text(StatusCode::BAD_REQUEST, msg.into())
    }

    pub fn auth_failed() -> Self {
        Self::Authentication("Authentication failed".to_owned())
    }

    fn status_and_code(&self) -> (StatusCode, u16) {
        match self {
            Self::Authentication(_) => (StatusCode::UNAUTHORIZED, code::AUTHENTICATION),
            Self::TokenExpired => (StatusCode::UNAUTHORIZED, code::JWT_TOKEN_EXPIRED),
            Self::PermissionDenied => (StatusCode::FORBIDDEN, code::PERMISSION_DENIED),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, code::BAD_REQUEST_PARAMS),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, code::ITEM_NOT_FOUND),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, code::BAD_REQUEST_PARAMS),
            Self::VersionConflict(_) => (StatusCode::CONFLICT, code::VERSION_CONFLICT),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, code::BAD_REQUEST_PARAMS),
            Self::TooManyRequests(..) => (StatusCode::TOO_MANY_REQUESTS, code::TOO_MANY_REQUESTS),
            Self::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, code::DATABASE),
            Self::General(_) => (StatusCode::INTERNAL_SERVER_ERROR, code::GENERAL),
            Self::Text(status, _) => (*status, code::GENERAL),
        }
    }
}

/// ThingsBoard's `{"status","message","errorCode","timestamp"}`.
pub fn error_json(status: StatusCode, message: &str, error_code: u16) -> Value {
    json!({
        "status": status.as_u16(),
        "message": message,
        "errorCode": error_code,
        "timestamp": now_ms(),
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Database(detail) = &self {
            let request_id = super::observe::request_id();
            tracing::error!(error = %detail, request_id, "database error while answering a REST request");
        }
        if let Self::Text(status, text) = self {
            let mut resp = (status, text).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain;charset=UTF-8"),
            );
            return resp;
        }
        let (status, error_code) = self.status_and_code();
        let mut resp = (
            status,
            axum::Json(error_json(status, &self.to_string(), error_code)),
        )
            .into_response();
        if let Self::TooManyRequests(_, retry_after) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict(msg) | StorageError::Invalid(msg) => Self::BadRequest(msg),
            StorageError::NotFound => Self::NotFound(ITEM_NOT_FOUND_MSG.to_owned()),
            StorageError::Database(detail) => Self::Database(detail),
            StorageError::Closed => Self::General("Service is shutting down".to_owned()),
        }
    }
}

/// Parses an id from a path or body; a malformed one is 400/31 as in ThingsBoard.
pub fn parse_uuid(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text.trim())
        .map_err(|_| ApiError::BadRequest(format!("Invalid UUID string: {text}")))
}

/// The query string as ordered pairs; repeated parameters are kept (`?key=a&key=b`).
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required parameter, with Spring's wording when absent.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Required request parameter '{name}' is not present"
            ))
        })
    }

    /// An optional integer; present but malformed is 400/31.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::BadRequest(format!(
                    "Failed to convert value of parameter '{name}': '{v}'"
                ))
            }),
        }
    }

    /// An optional boolean (`true`/`false`, case-insensitive).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name).map(str::trim) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::BadRequest(format!(
                "Failed to convert value of parameter '{name}': '{v}'"
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_none() {
            return Ok(Self::default());
        }
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|_| ApiError::bad_request("Invalid query string"))
    }
}

/// The raw request body, whatever its Content-Type; too large is 413/31.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// A JSON body of any Content-Type; malformed JSON is 400/31 "Invalid request body".
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|_| ApiError::bad_request("Invalid request body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_thingsboard_codes() {
        let e: ApiError =
            StorageError::Conflict("Device with such name already exists!".into()).into();
        assert_eq!(e.status_and_code(), (StatusCode::BAD_REQUEST, 31));
        let e: ApiError = StorageError::Database("boom".into()).into();
        assert_eq!(e.status_and_code(), (StatusCode::INTERNAL_SERVER_ERROR, 46));
        assert_eq!(e.to_string(), "Database error");
    }

    #[test]
    fn params_keep_repeated_values() {
        let uri: axum::http::Uri = "/x?key=a&key=b%2Cc&limit=5".parse().unwrap();
        let q = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).unwrap();
        let p = Params(q.0);
        assert_eq!(p.all("key"), vec!["a", "b,c"]);
        assert_eq!(p.int("limit").unwrap(), Some(5));
        assert!(p.int("key").is_err());
        assert!(parse_uuid("nope").is_err());
    }
}
