//! The REST client the API tests share: requests with a bearer token, ThingsBoard error checks.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TENANT_EMAIL, TENANT_PASSWORD, TestApp};

/// One HTTP answer, body kept as text.
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    pub retry_after: Option<String>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts 200 and returns the JSON body (Null when empty).
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "body: {}", self.text);
        if self.text.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts ThingsBoard's error JSON with this status and errorCode; returns the message.
    pub fn error(&self, status: u16, code: u64) -> String {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{body}");
        assert_eq!(body["errorCode"].as_u64(), Some(code), "{body}");
        assert!(
            body["timestamp"]
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "{body}"
        );
        body["message"].as_str().expect("message").to_owned()
    }

    /// Asserts a bare text error body (the telemetry handlers).
    pub fn text_error(&self, status: u16, text: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.text, text);
        assert!(
            self.content_type.starts_with("text/plain"),
            "{}",
            self.content_type
        );
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn anonymous(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: app.http.clone(),
            token: None,
        }
    }

    pub async fn login(app: &TestApp, email: &str, password: &str) -> Self {
        let anon = Self::anonymous(app);
        let pair = anon
            .send(
                Method::POST,
                "/api/auth/login",
                Some(json!({"username": email, "password": password})),
            )
            .await
            .ok();
        Self {
            token: Some(pair["token"].as_str().expect("token").to_owned()),
            ..anon
        }
    }

    pub async fn tenant(app: &TestApp) -> Self {
        Self::login(app, TENANT_EMAIL, TENANT_PASSWORD).await
    }

    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("X-Authorization", format!("Bearer {t}"));
        }
        if !body.is_empty() {
            req = req.header("Content-Type", content_type).body(body);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Resp {
            status,
            content_type,
            retry_after,
            text: resp.text().await.expect("body"),
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, "application/json", bytes).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a device and returns (id, Device JSON).
    pub async fn create_device(&self, body: Value) -> (String, Value) {
        let device = self.post("/api/device", body).await.ok();
        (device["id"]["id"].as_str().expect("id").to_owned(), device)
    }

    pub async fn token_of(&self, device: &str) -> String {
        let creds = self
            .get(&format!("/api/device/{device}/credentials"))
            .await
            .ok();
        creds["credentialsId"].as_str().expect("token").to_owned()
    }
}

pub fn claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "three-part JWT: {jwt}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

pub fn now_ms() -> i64 {
    ferroboard::domain::now_ms()
}

pub const NULL_UUID: &str = "13814000-1dd2-11b2-8080-808080808080";
pub const MISSING_ID: &str = "6f1c2a4e-0000-4000-8000-000000000001";
pub const TELEMETRY: &str = "/api/plugins/telemetry/DEVICE";

impl Api {
    pub async fn create_device_with_token(&self, body: Value, token: &str) -> (String, Value) {
        let device = self
            .post(&format!("/api/device?accessToken={token}"), body)
            .await
            .ok();
        (device["id"]["id"].as_str().expect("id").to_owned(), device)
    }
}

pub fn attr_map(rows: &Value) -> serde_json::Map<String, Value> {
    rows.as_array()
        .expect("AttributeData list")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_owned(),
                r["value"].clone(),
            )
        })
        .collect()
}

pub fn series(body: &Value, key: &str) -> Vec<(i64, Value)> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {body}"))
        .iter()
        .map(|e| (e["ts"].as_i64().expect("ts"), e["value"].clone()))
        .collect()
}
