//! `GET /v1/models` and `GET /v1/models/{id}` are answered by the gateway from its routes, in
//! real Envoy with the shipped demo configuration: the caller is identified first, the list is
//! OpenAI's shape (Anthropic's with `anthropic-version`), and nothing reaches a provider.

mod support;

use serde_json::{json, Value};
use support::*;

fn get_with(gw: &Gateway, path: &str, h: &[(&str, &str)]) -> (u16, Option<String>, Value, bool) {
    let mut req = agent().get(&gw.url(path));
    for (k, v) in h {
        req = req.header(*k, *v);
    }
    let mut r = req.call().expect("GET");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let upstream = r
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("x-fake-"));
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, ct, v, upstream)
}

const DEMO_MODELS: [&str; 10] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "bedrock-claude-sonnet-4-5",
    "gemini-2.5-flash",
    "vertex-gemini-2.5-flash",
    "vertex-claude-sonnet-4-5",
    "resilient",
    "gpt-4o-mini-cached",
];

/// Who owns each demo model: the provider of its route (a chain's first provider).
fn demo_owner(id: &str) -> &'static str {
    match id {
        "bedrock-claude-sonnet-4-5" => "bedrock",
        "gemini-2.5-flash" => "gemini",
        "vertex-gemini-2.5-flash" | "vertex-claude-sonnet-4-5" => "vertex",
        _ => "openai",
    }
}

#[test]
fn the_gateway_lists_its_routes_models() {
    let fake = Fake::start(None);
    let gw = Gateway::start(
        &fake,
        Options {
            workers: 1,
            ..Options::default()
        },
    );
    let auth = format!("Bearer {DEMO_KEY}");
    let key = [("authorization", auth.as_str())];

    for prefix in ["/v1", "/openai/v1"] {
        let (status, ct, v, upstream) = get_with(&gw, &format!("{prefix}/models"), &key);
        assert_eq!(status, 200, "{v}");
        assert!(!upstream, "answered by a provider: {v}");
        assert_eq!(ct.as_deref(), Some("application/json"));
        assert_eq!(v["object"], "list", "{v}");
        let data = v["data"].as_array().unwrap();
        let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
        // Split and failover routes under the client's names, a glob by its examples, a
        // mapped route under the name the client asks for; header-only routes and globs
        // without examples not at all.
        assert_eq!(ids, DEMO_MODELS, "{v}");
        for m in data {
            assert_eq!(m["object"], "model");
            assert_eq!(m["owned_by"], demo_owner(m["id"].as_str().unwrap()), "{m}");
            assert!(m["created"].is_u64(), "{m}");
        }
    }

    let (status, _, v, upstream) = get_with(&gw, "/v1/models/gpt-4.1-mini", &key);
    assert_eq!(status, 200, "{v}");
    assert!(!upstream);
    assert_eq!(
        v,
        json!({"id": "gpt-4.1-mini", "object": "model", "created": 0, "owned_by": "openai"})
    );

    let (status, _, v, _) = get_with(&gw, "/v1/models/gpt-4.1-nano", &key);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // Strangers are refused first, in their client's format.
    let (status, _, v, upstream) = get_with(&gw, "/v1/models", &[]);
    assert_eq!(status, 401, "{v}");
    assert!(!upstream);
    assert_eq!(v["error"]["code"], "missing_api_key", "{v}");
    let (status, _, v, _) = get_with(
        &gw,
        "/v1/models/gpt-4o",
        &[("authorization", "Bearer sk-nope")],
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{v}"
    );

    // Anthropic clients get Anthropic's shapes.
    let anth = [("x-api-key", DEMO_KEY), ("anthropic-version", "2023-06-01")];
    let (status, _, v, upstream) = get_with(&gw, "/v1/models", &anth);
    assert_eq!(status, 200, "{v}");
    assert!(!upstream);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, DEMO_MODELS, "{v}");
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "gpt-4o");
    assert_eq!(v["last_id"], "gpt-4o-mini-cached");
    assert_eq!(
        v["data"][2],
        json!({"type": "model", "id": "gpt-4.1", "display_name": "gpt-4.1", "created_at": "1970-01-01T00:00:00Z"})
    );
    let (status, _, v, _) = get_with(&gw, "/v1/models/gpt-4o", &anth);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], "model");
    let (status, _, v, _) = get_with(&gw, "/v1/models/nope", &anth);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    let (status, _, v, _) = get_with(&gw, "/v1/models", &[("anthropic-version", "2023-06-01")]);
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
}

#[test]
fn the_openai_sdk_lists_and_retrieves_models() {
    let fake = Fake::start(None);
    let gw = Gateway::start(
        &fake,
        Options {
            workers: 1,
            ..Options::default()
        },
    );
    run_sdk_script(&gw, "openai_models.py", "openai sdk models: ok");
    run_sdk_script(&gw, "anthropic_models.py", "anthropic sdk models: ok");
}
