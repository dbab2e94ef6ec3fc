//! The web console from the binary: `/` and every asset with its content type and `ETag` (304 on
//! revalidation), unknown assets and unknown `/api/*` paths answered with ThingsBoard's JSON 404.

use crate::common::TestApp;

async fn get(app: &TestApp, path: &str, etag: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", app.http));
    if let Some(tag) = etag {
        req = req.header("If-None-Match", tag);
    }
    req.send().await.expect("request")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn console_is_served(app: &TestApp) {
    let index = get(app, "/", None).await;
    assert_eq!(index.status(), 200);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&index, "cache-control"), "no-cache");
    let etag = header(&index, "etag");
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag:?}");
    let html = index.text().await.expect("text");
    assert!(html.contains(r#"src="/console/app.js""#), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external URL: {html}"
    );
    assert_eq!(get(app, "/", Some(&etag)).await.status(), 304);

    // Every module the page imports is served, with a JavaScript type; and the stylesheet.
    let app_js = get(app, "/console/app.js", None).await;
    assert_eq!(app_js.status(), 200);
    assert_eq!(
        header(&app_js, "content-type"),
        "text/javascript; charset=utf-8"
    );
    let text = app_js.text().await.expect("text");
    let imports: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("import "))
        .filter_map(|l| l.split("'./").nth(1)?.split('\'').next())
        .collect();
    assert!(imports.len() >= 5, "{imports:?}");
    for module in imports {
        let resp = get(app, &format!("/console/{module}"), None).await;
        assert_eq!(resp.status(), 200, "{module}");
        assert_eq!(
            header(&resp, "content-type"),
            "text/javascript; charset=utf-8",
            "{module}"
        );
        assert_eq!(
            header(&resp, "x-content-type-options"),
            "nosniff",
            "{module}"
        );
    }
    let css = get(app, "/console/app.css", None).await;
    assert_eq!(header(&css, "content-type"), "text/css; charset=utf-8");
    let css_tag = header(&css, "etag");
    assert_ne!(css_tag, etag, "each file has its own validator");
    assert_eq!(
        get(app, "/console/app.css", Some(&css_tag)).await.status(),
        304
    );
    assert_eq!(
        get(app, "/console/app.css", Some("\"stale\""))
            .await
            .status(),
        200
    );

    // The hash router needs no server route: `/#/devices` is `/` to the server.
    for missing in [
        "/console/nothing.js",
        "/console/..%2Fapp.js",
        "/api/unknown",
        "/devices",
    ] {
        let resp = get(app, missing, None).await;
        assert_eq!(resp.status(), 404, "{missing}");
        assert!(
            header(&resp, "content-type").starts_with("application/json"),
            "{missing}"
        );
        let body: serde_json::Value = resp.json().await.expect("JSON");
        assert_eq!(body["errorCode"], 32, "{missing}: {body}");
        assert_eq!(body["status"], 404, "{missing}: {body}");
    }
}

crate::both_backends!(console_is_served);
