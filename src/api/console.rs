//! The web console: the files of `web/`, compiled into the binary, served at `/` and
//! `/console/{asset}` with their content types and an `ETag` (nothing is read from disk at run time).
//! The console routes itself in the browser (`/#/devices`, `/#/device/{id}`, ...), so one page serves all.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::State as AppStateRef;
use super::error::{ApiError, ITEM_NOT_FOUND_MSG};

/// One embedded file: its name under `/console/`, its bytes and content type.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!("../../web/", $name)).as_slice())),*]
    };
}

/// Every file of `web/` (a test checks that none is left out).
static FILES: [(&str, &[u8]); 10] = assets![
    "index.html",
    "app.css",
    "app.js",
    "api.js",
    "ui.js",
    "svg.js",
    "devices.js",
    "device.js",
    "rules.js",
    "people.js",
];

/// The content type of a file name's extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, body)| Asset {
            name,
            body,
            content_type: content_type(name),
            etag: etag(body),
        })
        .collect()
});

/// A strong validator: FNV-1a of the bytes (the files only change with the binary).
fn etag(body: &[u8]) -> HeaderValue {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/console/{asset}",
            get(|Path(asset): Path<String>, headers: HeaderMap| async move {
                serve(&asset, &headers)
            }),
        )
}

/// The asset with `Cache-Control: no-cache` (the browser revalidates with `If-None-Match` and
/// gets 304 while the binary is the same); ThingsBoard's JSON 404 for an unknown name.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::NotFound(ITEM_NOT_FOUND_MSG.to_owned()).into_response();
    };
    let common = [
        (header::ETAG, asset.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_web_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("web/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|f| f.0.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
