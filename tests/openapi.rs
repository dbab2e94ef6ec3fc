//! The OpenAPI document: every route the router registers is in it (read off the route
//! registrations in `src/`), it is served at `/v3/api-docs`, and the API explorer's assets come
//! from the binary itself.

mod common;

use std::path::Path;

use common::Backend;
use ferroboard::api::openapi::OPERATIONS;

/// `(method, path)` of every `.route(...)` registration under `src/api` and `src/transport/http`.
fn registered_routes() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Modules that build their paths from a prefix (`.route(&p("..."), ...)`).
    let prefixes = [
        ("telemetry.rs", "/api/plugins/telemetry/{p1}/{p2}/"),
        ("attributes.rs", "/api/plugins/telemetry/"),
    ];
    let literal = regex::Regex::new(r#""([^"]*)""#).expect("regex");
    let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").expect("regex");
    let mut out = Vec::new();
    let mut files = Vec::new();
    for dir in ["src/api", "src/transport/http"] {
        sources(&root.join(dir), &mut files);
    }
    {
        for path in files {
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("read source");
            for (start, _) in text.match_indices(".route(") {
                let call = balanced(&text[start + ".route(".len()..]);
                let Some(lit) = literal.captures(call) else {
                    panic!("{file}: a .route( without a path literal: {call}");
                };
                let mut route = lit[1].to_owned();
                if call.trim_start().starts_with("&p(") {
                    let prefix = prefixes
                        .iter()
                        .find(|(f, _)| *f == file)
                        .unwrap_or_else(|| panic!("{file}: unknown path prefix"))
                        .1;
                    route = format!("{prefix}{route}");
                }
                let rest = &call[lit.get(0).expect("match").end()..];
                let methods: Vec<&str> = method
                    .captures_iter(rest)
                    .map(|c| c.get(1).expect("m").as_str())
                    .collect();
                assert!(!methods.is_empty(), "{file}: no method for {route}");
                for m in methods {
                    out.push((m.to_owned(), route.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Every `.rs` file under `dir`, subfolders included.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text up to the parenthesis closing the one just opened.
fn balanced(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

#[test]
fn every_route_of_the_router_is_in_the_document() {
    let registered = registered_routes();
    assert!(
        registered.len() > 90,
        "the scan finds the routes: {}",
        registered.len()
    );
    let documented: Vec<(String, String)> = OPERATIONS
        .iter()
        .map(|o| (o.method.as_str().to_owned(), o.path.to_owned()))
        .collect();
    let missing: Vec<&(String, String)> = registered
        .iter()
        .filter(|r| !documented.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from api::openapi::OPERATIONS: {missing:?}"
    );
    // And nothing documented that is not served (the document itself is served by the explorer).
    let stale: Vec<&(String, String)> = documented
        .iter()
        .filter(|d| !registered.contains(d) && d.1 != "/v3/api-docs")
        .collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_explorer_are_served_by_the_binary() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let doc: serde_json::Value = reqwest::get(format!("{}/v3/api-docs", app.http))
        .await
        .expect("api-docs")
        .json()
        .await
        .expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/api/device/{deviceId}"]["get"].is_object(),
        "{doc}"
    );
    assert_eq!(
        doc["paths"]["/api/device/{deviceId}"]["get"]["security"][0]["X-Authorization"],
        serde_json::json!([])
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let html = client
        .get(format!("{}/swagger-ui.html", app.http))
        .send()
        .await
        .expect("swagger-ui.html");
    assert!(html.status().is_redirection(), "{}", html.status());
    let page = reqwest::get(format!("{}/swagger-ui/", app.http))
        .await
        .expect("explorer page");
    assert_eq!(page.status(), 200);
    assert!(
        page.text().await.expect("page").contains("swagger-ui"),
        "the explorer page"
    );
    let bundle = reqwest::get(format!("{}/swagger-ui/swagger-ui-bundle.js", app.http))
        .await
        .expect("bundle");
    assert_eq!(
        bundle.status(),
        200,
        "the explorer's script ships in the binary"
    );
    assert!(bundle.bytes().await.expect("bytes").len() > 100_000);
    app.shutdown().await;
}
