//! Stage 1: the request headers (who calls, what for, how large), `/v1/models`, and routing on
//! the headers alone when body routing is off.

use serde_json::json;

use super::support::*;
use crate::flow::Step;
use crate::host::fake::FakeHost;

fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `list` with `name` set to `value`.
fn replaced(
    list: Vec<(&'static str, &'static str)>,
    name: &str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    list.into_iter()
        .map(|(k, v)| if k == name { (k, value) } else { (k, v) })
        .collect()
}

#[test]
fn a_path_the_gateway_does_not_serve_passes_with_only_the_client_credential_removed() {
    let sent = post("/v1/files", &[]);
    let mut h = host(&sent);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(ex.on_request_headers(&mut h, false), Step::Continue);
    let kept: Vec<_> = sent
        .iter()
        .copied()
        .filter(|(k, _)| *k != "authorization")
        .collect();
    assert_eq!(h.request_headers, owned(&kept));
    h.request_body = b"file".to_vec();
    assert_eq!(ex.on_request_body(&mut h, 4, true), Step::Continue);
    h.respond(200, &JSON, b"{}");
    assert_eq!(ex.on_response_headers(&mut h), Step::Continue);
    assert_eq!(ex.on_response_body(&mut h, 2, true), Step::Continue);
    ex.finish(&mut h);
    assert_eq!(
        h.response_headers,
        owned(&[(":status", "200"), ("content-type", "application/json")])
    );
    assert!(h.bodies_set.is_empty());
    assert!(h.callouts.is_empty() && h.replies.is_empty());
    assert!(h.updates.is_empty() && h.set_properties.is_empty());
}

#[test]
fn an_unknown_key_is_refused_with_401_before_the_body() {
    let mut h = host(&replaced(chat(), "authorization", "Bearer sk-stranger"));
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, false));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers,
        vec![
            ("content-type", "application/json".to_string()),
            ("x-llm-gateway-request-id", "req-1".to_string()),
        ]
    );
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                         "param": null, "code": "invalid_api_key"}})
    );
    // The stranger's key went nowhere.
    assert_eq!(h.request_header("authorization"), None);
    assert!(h.callouts.is_empty());
}

#[test]
fn a_missing_key_is_refused_in_the_messages_api_shape_for_an_anthropic_client() {
    let headers: Vec<_> = messages()
        .into_iter()
        .filter(|(k, _)| *k != "x-api-key")
        .collect();
    let mut h = host(&headers);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, false));
    assert_eq!(r.status, 401);
    assert_eq!(
        parsed(&r.body),
        json!({"type": "error", "error": {"type": "authentication_error",
            "message": "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY)."}})
    );
}

fn small() -> serde_json::Value {
    config_with(json!({"max_request_body_bytes": 1024}))
}

const TOO_LARGE: &str = "The request body is larger than this gateway accepts (1024 bytes).";

#[test]
fn a_declared_length_over_the_limit_is_413_at_the_headers() {
    let mut h = host(&post("/v1/chat/completions", &[("content-length", "1025")]));
    let vm = vm(&h, &small());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, false));
    assert_eq!(r.status, 413);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": TOO_LARGE, "type": "invalid_request_error", "param": null,
                         "code": "request_too_large"}})
    );
}

#[test]
fn a_body_growing_over_the_limit_is_413_before_its_end() {
    let mut h = host(&chat());
    let vm = vm(&h, &small());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(ex.on_request_headers(&mut h, false), Step::Pause);
    assert_eq!(ex.on_request_body(&mut h, 1024, false), Step::Pause);
    let r = reply(ex.on_request_body(&mut h, 1025, false));
    assert_eq!(r.status, 413);
    assert_eq!(parsed(&r.body)["error"]["message"], TOO_LARGE);
    // Once refused, the rest of the body is held (the reply is on its way).
    assert_eq!(ex.on_request_body(&mut h, 2000, true), Step::Pause);
    assert!(h.request_header("x-llm-gateway-cluster").is_none());
}

#[test]
fn a_request_without_a_body_is_400() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, true));
    assert_eq!(r.status, 400);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "We could not parse the JSON body of your request (the body is empty). The body must be a JSON object.",
                         "type": "invalid_request_error", "param": null, "code": "invalid_json"}})
    );
}

#[test]
fn a_body_that_is_not_a_json_object_is_400() {
    let vm = vm(&host(&[]), &config());
    let mut h = host(&chat());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send_raw(&mut ex, &mut h, b"[1, 2]"));
    assert_eq!(r.status, 400);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "We could not parse the JSON body of your request (expected a JSON object). The body must be a JSON object.",
                         "type": "invalid_request_error", "param": null, "code": "invalid_json"}})
    );
    let mut h = host(&chat());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send_raw(
        &mut ex,
        &mut h,
        br#"{"model": "gpt-4o-mini", "messages": ["#,
    ));
    assert_eq!(r.status, 400);
    assert_eq!(parsed(&r.body)["error"]["code"], "invalid_json");
    assert!(h.bodies_set.is_empty());
    assert!(h.request_header("x-llm-gateway-cluster").is_none());
}

fn get(path: &'static str, extra: &[(&'static str, &'static str)]) -> FakeHost {
    let mut headers = vec![
        (":method", "GET"),
        (":path", path),
        ("authorization", "Bearer sk-team-a"),
    ];
    headers.extend_from_slice(extra);
    host(&headers)
}

#[test]
fn models_are_listed_from_the_routes_and_nothing_goes_upstream() {
    let mut h = get("/v1/models", &[]);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, true));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers,
        vec![("content-type", "application/json".to_string())]
    );
    let model = |id: &str, owner: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": owner});
    assert_eq!(
        parsed(&r.body),
        json!({"object": "list", "data": [
            model("gpt-4o-mini", "openai"),
            model("fast", "openai"),
            model("claude-sonnet-4-5", "claude"),
            model("gpt-4.1", "openai"),
            model("gpt-4o", "openai"),
        ]})
    );
    assert_eq!(h.request_header("x-llm-gateway-cluster"), None);
    // Not an LLM request: nothing is counted.
    ex.finish(&mut h);
    assert!(h.updates.is_empty() && h.set_properties.is_empty());
}

#[test]
fn a_model_is_retrieved_in_anthropic_shape_for_an_anthropic_client() {
    let version = [("anthropic-version", "2023-06-01")];
    let mut h = get("/v1/models/claude-sonnet-4-5", &version);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, true));
    assert_eq!(r.status, 200);
    assert_eq!(
        parsed(&r.body),
        json!({"type": "model", "id": "claude-sonnet-4-5", "display_name": "claude-sonnet-4-5",
               "created_at": "1970-01-01T00:00:00Z"})
    );
    let mut h = get("/v1/models/claude-opus-9", &version);
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, true));
    assert_eq!(r.status, 404);
    assert_eq!(
        parsed(&r.body),
        json!({"type": "error", "error": {"type": "not_found_error",
            "message": "The model `claude-opus-9` does not exist or you do not have access to it."}})
    );
}

/// Body routing off (Istio's WasmPlugin): routes on headers only, a limit on tokens.
fn headers_only() -> serde_json::Value {
    let mut c = config();
    c["providers"] = json!({"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}});
    c["routes"] = json!([{"name": "fast-tier", "match": {"header": {"name": "x-llm-tier", "value": "fast"}},
                          "to": {"provider": "openai"}}]);
    c["default"] = json!({"to": {"provider": "openai"}});
    c["body_routing"] = json!(false);
    c["limits"] = json!({"default": {"tpm": 100000}, "max_tracked": 16});
    c
}

#[test]
fn without_body_routing_the_request_is_routed_on_its_headers_and_its_body_counted_as_it_passes() {
    let mut h = host(&chat());
    let vm = vm(&h, &headers_only());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(ex.on_request_headers(&mut h, false), Step::Continue);
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    assert_eq!(
        h.request_header("authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(h.request_header("accept-encoding"), None);
    // The body passes in two pieces, read but never held or changed.
    let body = hello("gpt-4o-mini").to_string().into_bytes();
    let (first, rest) = body.split_at(20);
    h.request_body = first.to_vec();
    assert_eq!(
        ex.on_request_body(&mut h, first.len(), false),
        Step::Continue
    );
    h.request_body = rest.to_vec();
    assert_eq!(ex.on_request_body(&mut h, rest.len(), true), Step::Continue);
    assert!(h.bodies_set.is_empty());
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    // Admitted on one token, before the prompt was known.
    assert_eq!(
        h.response_header("x-ratelimit-limit-tokens").as_deref(),
        Some("100000")
    );
    assert_eq!(
        h.response_header("x-ratelimit-remaining-tokens").as_deref(),
        Some("99999")
    );
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.request_model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(h.prop("llm.counted_prompt_tokens").as_deref(), Some("8"));
    assert_eq!(h.prop("llm.prompt_tokens").as_deref(), Some("8"));
    assert_eq!(
        counted(&h),
        vec![requests_metric("other:default", "openai", "team-a", "ok")]
    );
}

#[test]
fn without_body_routing_an_anthropic_client_is_refused() {
    let mut h = host(&messages());
    let vm = vm(&h, &headers_only());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(ex.on_request_headers(&mut h, false));
    assert_eq!(r.status, 400);
    assert_eq!(
        parsed(&r.body),
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "This gateway serves the Messages API only with body_routing on."}})
    );
}
