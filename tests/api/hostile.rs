//! REST time-series and attribute saves of hostile payloads: huge exponents stay strings of their
//! own text; deep nesting, long keys, NUL characters and oversized values answer 400.

use reqwest::Method;
use serde_json::json;

use crate::common::TestApp;
use crate::support::*;

/// Bodies the saves must refuse with 400, each with a text the answer names.
fn refused() -> Vec<(String, &'static str)> {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    vec![
        (format!(r#"{{"deep":{deep}}}"#), "JSON"),
        (format!(r#"{{"{}":1}}"#, "k".repeat(256)), "255 characters"),
        (r#"{"s":"nul \u0000 inside"}"#.to_owned(), "NUL"),
        (r#"{"j":{"a":["\u0000"]}}"#.to_owned(), "NUL"),
        (
            format!(r#"{{"big":"{}"}}"#, "x".repeat(64 * 1024 + 1)),
            "json.max_value_size",
        ),
    ]
}

async fn rest_saves_refuse_hostile_payloads(app: &TestApp) {
    let api = Api::tenant(app).await;
    let (id, _) = api.create_device(json!({"name": "hostile-rest"})).await;
    let base = format!("{TELEMETRY}/{id}");
    let post = |path: String, body: String| {
        let api = &api;
        async move {
            api.raw(Method::POST, &path, "application/json", body.into_bytes())
                .await
        }
    };
    for (body, names) in refused() {
        for path in [
            format!("{base}/timeseries/ANY"),
            format!("{base}/SERVER_SCOPE"),
            format!("{base}/attributes/SHARED_SCOPE"),
        ] {
            let resp = post(path.clone(), body.clone()).await;
            assert_eq!(resp.status, 400, "{path}: {}", resp.text);
            assert!(resp.text.contains(names), "{path}: {}", resp.text);
        }
    }
    // Numbers beyond LONG and DOUBLE are saved as strings of their own text.
    let huge = r#"{"t":1e999999999999,"u":-1e-999999999}"#;
    assert_eq!(
        post(format!("{base}/timeseries/ANY"), huge.to_owned())
            .await
            .status,
        200
    );
    assert_eq!(
        post(format!("{base}/SERVER_SCOPE"), huge.to_owned())
            .await
            .status,
        200
    );
    let latest = api
        .get(&format!("{base}/values/timeseries?keys=t,u,deep,s,j,big"))
        .await
        .ok();
    assert_eq!(series(&latest, "t")[0].1, "1e+999999999999");
    assert_eq!(series(&latest, "u")[0].1, "-1e-999999999");
    for key in ["deep", "s", "j", "big"] {
        assert!(series(&latest, key)[0].1.is_null(), "{key} was not stored");
    }
    let attrs = api
        .get(&format!("{base}/values/attributes/SERVER_SCOPE"))
        .await
        .ok();
    let attrs = attr_map(&attrs);
    assert_eq!(attrs["t"], "1e+999999999999");
    assert_eq!(attrs.len(), 2, "{attrs:?}");
}

crate::both_backends!(rest_saves_refuse_hostile_payloads);
