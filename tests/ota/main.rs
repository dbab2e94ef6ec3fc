//! Firmware and software over the air against the real server: packages over REST (multipart
//! uploads streamed into storage, checksums, limits, downloads, lists, deletion), assignment to
//! devices and chunked downloads over MQTT — on SQLite and
//! PostgreSQL.

mod assignment;
mod chunks;
#[path = "../mqtt/clients.rs"]
mod clients;
#[path = "../common/mod.rs"]
mod common;
mod mqtt;
mod rest;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;

use reqwest::Method;
use serde_json::{Value, json};

use support::{Api, Resp};

/// One part of a multipart form: name, file name (a file part) and content.
pub struct Part<'a> {
    pub name: &'a str,
    pub file_name: Option<&'a str>,
    pub content: &'a [u8],
}

/// `multipart/form-data` of `parts`: (content type, body).
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "ferroboard-test-boundary-7f3a";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match p.file_name {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/x-firmware\r\n\r\n",
                    p.name
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                    p.name
                )
                .as_bytes(),
            ),
        }
        body.extend_from_slice(p.content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The tenant's default profile id.
pub async fn default_profile(api: &Api) -> String {
    let info = api.get("/api/deviceProfileInfo/default").await.ok();
    info["id"]["id"].as_str().expect("profile id").to_owned()
}

/// Creates a package info and returns it.
pub async fn create_package(
    api: &Api,
    profile: &str,
    kind: &str,
    title: &str,
    version: &str,
) -> Value {
    api.post(
        "/api/otaPackage",
        json!({"title": title, "version": version, "type": kind,
               "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile},
               "additionalInfo": {"description": "test"}}),
    )
    .await
    .ok()
}

/// Uploads `data` as the file of package `id`; `query` is appended to the path.
pub async fn upload(
    api: &Api,
    id: &str,
    query: &str,
    fields: &[(&str, &str)],
    data: &[u8],
) -> Resp {
    let mut parts: Vec<Part<'_>> = fields
        .iter()
        .map(|(name, value)| Part {
            name,
            file_name: None,
            content: value.as_bytes(),
        })
        .collect();
    parts.push(Part {
        name: "file",
        file_name: Some("fw.bin"),
        content: data,
    });
    let (content_type, body) = multipart(&parts);
    api.raw(
        Method::POST,
        &format!("/api/otaPackage/{id}{query}"),
        &content_type,
        body,
    )
    .await
}

/// Deterministic file content.
pub fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + i / 7) % 256) as u8).collect()
}
