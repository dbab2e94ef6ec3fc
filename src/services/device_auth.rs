//! Device authentication: the credential lookup of an MQTT CONNECT — access tokens, MQTT basic
//! credentials and X.509 client certificates (`x509_chain`) — and the access token of an HTTP device request,
//! with outcomes each transport maps to its answers (CONNACK codes, HTTP statuses).

use std::time::Duration;

use super::Services;
use super::auth_cache::{AuthCache, Begin, Key, NegativeCache, Refused};
use crate::domain::credentials::sha3_hex;
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
    /// The certificates the TLS client sent after its leaf (issuer first).
    pub chain: &'a [Vec<u8>],
}

/// Longest a credential lookup may take; a slower one answers "server unavailable".
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

impl Services {
    /// Finds the device the CONNECT's credentials belong to. Credentials refused a moment ago
    /// are refused again from memory, and an unknown token is not looked up again
    /// (`auth_cache`); a lookup is bounded by `LOOKUP_TIMEOUT`.
    pub async fn authenticate_device(&self, creds: &Credentials<'_>) -> AuthResult {
        if creds.certificate.is_some() {
            // Certificates are not cached: the TLS handshake before costs more than the lookup.
            return self.timed_check(creds).await;
        }
        let username = creds.username.filter(|u| !u.is_empty());
        if username.is_none() && creds.client_id.is_empty() {
            return AuthResult::NoCredentials;
        }
        let key = AuthCache::key(creds.client_id, creds.username, creds.password);
        let checked = through(
            &self.auth_cache.connects,
            key,
            || self.timed_check(creds),
            |result| match result {
                AuthResult::NoCredentials => Some(Refused::NoCredentials),
                AuthResult::NotAuthorized => Some(Refused::NotAuthorized),
                AuthResult::Accepted(_) | AuthResult::Unavailable(_) => None,
            },
        )
        .await;
        match checked {
            Through::Cached(Refused::NoCredentials) => AuthResult::NoCredentials,
            Through::Cached(Refused::NotAuthorized) => AuthResult::NotAuthorized,
            Through::Looked(result) => result,
        }
    }

    /// Finds the device whose ACCESS_TOKEN credentials are `token` (the HTTP device API, which,
    /// as ThingsBoard's, accepts access tokens only). An unknown token is remembered in the same
    /// negative cache as the MQTT user names that are tokens, so repeating it costs no lookup.
    pub async fn authenticate_token(&self, token: &str) -> AuthResult {
        if token.is_empty() {
            return AuthResult::NotAuthorized;
        }
        let lookup = || async {
            match tokio::time::timeout(LOOKUP_TIMEOUT, self.store.find_by_credentials_id(token))
                .await
            {
                Ok(found) => found,
                Err(_) => Err(StorageError::Database(format!(
                    "credential lookup took longer than {} s",
                    LOOKUP_TIMEOUT.as_secs()
                ))),
            }
        };
        let found = through(
            &self.auth_cache.tokens,
            AuthCache::key("", Some(token), None),
            lookup,
            |found| matches!(found, Ok(None)).then_some(Refused::NotAuthorized),
        )
        .await;
        match found {
            Through::Looked(Ok(Some((device, stored))))
                if stored.credentials_type == "ACCESS_TOKEN" =>
            {
                AuthResult::Accepted(Box::new(device))
            }
            Through::Looked(Err(e)) => AuthResult::Unavailable(e),
            Through::Looked(Ok(_)) | Through::Cached(_) => AuthResult::NotAuthorized,
        }
    }

    /// The credential check, bounded by `LOOKUP_TIMEOUT`.
    async fn timed_check(&self, creds: &Credentials<'_>) -> AuthResult {
        let check = async {
            // A client certificate decides alone, as in ThingsBoard: username and password are
            // not used.
            match creds.certificate {
                Some(der) => self.authenticate_certificate(der, creds.chain).await,
                None => check(&self.store, &self.auth_cache.tokens, creds).await,
            }
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, check).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => AuthResult::Unavailable(e),
            Err(_) => AuthResult::Unavailable(StorageError::Database(format!(
                "credential lookup took longer than {} s",
                LOOKUP_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// A lookup run through a negative cache: answered by it, or run.
enum Through<T> {
    Cached(Refused),
    Looked(T),
}

/// Runs `lookup` for `key` unless `cache` refused the key recently; waits (once, bounded) for a
/// concurrent lookup of the same key instead of running a second one. `refusal` says which
/// results the cache remembers.
async fn through<T, Fut>(
    cache: &NegativeCache,
    key: Key,
    lookup: impl FnOnce() -> Fut,
    refusal: impl Fn(&T) -> Option<Refused>,
) -> Through<T>
where
    Fut: Future<Output = T>,
{
    let mut may_wait = true;
    let ticket = loop {
        match cache.begin(key, may_wait) {
            Begin::Cached(r) => return Through::Cached(r),
            Begin::Lookup(ticket) => break ticket,
            Begin::Wait(mut done) => {
                may_wait = false;
                // Resolves when the other lookup ends (its sender is dropped).
                let _ = tokio::time::timeout(LOOKUP_TIMEOUT, done.changed()).await;
            }
        }
    };
    let result = lookup().await;
    cache.finish(ticket, refusal(&result));
    Through::Looked(result)
}

async fn check(
    store: &DynStore,
    tokens: &NegativeCache,
    creds: &Credentials<'_>,
) -> Result<AuthResult, StorageError> {
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
    // The user name as a credentials id (an access token, or an MQTT_BASIC user name alone):
    // an unknown one is remembered, whatever client id comes with it next.
    let found = through(
        tokens,
        AuthCache::key("", Some(username), None),
        || store.find_by_credentials_id(username),
        |found| matches!(found, Ok(None)).then_some(Refused::NotAuthorized),
    )
    .await;
    let Through::Looked(found) = found else {
        return Ok(AuthResult::NotAuthorized);
    };
    let Some((device, stored)) = found? else {
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
            chain: &[],
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
