//! The Responses API through the flow: passed through to an OpenAI provider, translated for
//! chat-only and Anthropic providers, and the side requests.

use serde_json::json;

use super::support::*;
use crate::flow::Step;
use crate::host::fake::FakeHost;

/// `config()` with a chat-only provider serving model `llama-3`.
fn responses_config() -> serde_json::Value {
    let mut c = config();
    c["providers"]["chat-only"] =
        json!({"cluster": "vllm", "api_key_env": "OPENAI_API_KEY", "responses": "translate"});
    if let Some(routes) = c["routes"].as_array_mut() {
        routes.insert(
            0,
            json!({"name": "llama", "match": {"model": "llama-3"}, "to": {"provider": "chat-only"}}),
        );
    }
    c
}

fn admit(path: &'static str, body: &serde_json::Value) -> (Step, FakeHost) {
    let mut h = host(&post(path, &[]));
    let vm = vm(&h, &responses_config());
    let mut ex = vm.exchange(1).unwrap();
    let step = send(&mut ex, &mut h, body);
    (step, h)
}

#[test]
fn a_responses_request_passes_through_to_an_openai_provider() {
    let body = json!({"model": "fast", "input": "Hello", "stream": true});
    let (step, h) = admit("/v1/responses", &body);
    assert_eq!(step, Step::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/responses"));
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    // Only the model changes: no stream_options is added to a Responses body.
    let sent = parsed(&h.request_body);
    assert_eq!(
        sent,
        json!({"model": "gpt-4o-mini", "input": "Hello", "stream": true})
    );
}

#[test]
fn a_responses_request_goes_to_a_chat_only_provider_as_chat() {
    let body = json!({"model": "llama-3", "input": "Hello", "instructions": "Be brief.",
                      "max_output_tokens": 32, "stream": true});
    let (step, h) = admit("/x/v1/responses", &body);
    assert_eq!(step, Step::Continue);
    assert_eq!(
        h.request_header(":path").as_deref(),
        Some("/x/v1/chat/completions")
    );
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("vllm")
    );
    let sent = parsed(&h.request_body);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["messages"][1]["role"], "user");
    assert_eq!(sent["max_completion_tokens"], 32);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[test]
fn a_responses_request_goes_to_an_anthropic_provider_as_messages() {
    let body = json!({"model": "claude-sonnet-4-5", "input": "Hello", "max_output_tokens": 64});
    let (step, h) = admit("/v1/responses", &body);
    assert_eq!(step, Step::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("sk-ant"));
    assert!(h.request_header("anthropic-version").is_some());
    let sent = parsed(&h.request_body);
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["messages"][0]["role"], "user");
}

#[test]
fn the_translated_path_refuses_previous_response_id() {
    let body = json!({"model": "llama-3", "input": "Hi", "previous_response_id": "resp_1"});
    let (step, h) = admit("/v1/responses", &body);
    let Step::Reply(r) = step else {
        panic!("expected a reply, got {step:?}")
    };
    assert_eq!(r.status, 400);
    let e: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e["error"]["param"], "previous_response_id", "{e}");
    assert!(h.request_header("x-llm-gateway-cluster").is_none());
}

#[test]
fn input_tokens_is_answered_here_for_openai_models_only() {
    let mut h = host(&post("/v1/responses/input_tokens", &[]));
    let vm = vm(&h, &responses_config());
    let mut ex = vm.exchange(1).unwrap();
    let step = send(
        &mut ex,
        &mut h,
        &json!({"model": "gpt-4o-mini", "input": "Hello"}),
    );
    let Step::Reply(r) = step else {
        panic!("expected a reply, got {step:?}")
    };
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!({"object": "response.input_tokens", "input_tokens": 8})
    );
    // Not for a model it cannot count exactly.
    let mut h = host(&post("/v1/responses/input_tokens", &[]));
    let mut ex = vm.exchange(1).unwrap();
    let step = send(
        &mut ex,
        &mut h,
        &json!({"model": "claude-sonnet-4-5", "input": "Hello"}),
    );
    assert!(
        matches!(step, Step::Reply(ref r) if r.status == 400),
        "{step:?}"
    );
}
