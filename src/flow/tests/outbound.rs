//! Stage 3: the answer as it passes: the usage chunk the client did not ask for, and the
//! translators between OpenAI's and Anthropic's formats.

use serde_json::json;

use super::support::*;
use crate::flow::{Exchange, Step};
use crate::host::fake::FakeHost;
use crate::host::Buffer;

/// The response bodies the flow set.
fn response_bodies(h: &FakeHost) -> Vec<Vec<u8>> {
    h.bodies_set
        .iter()
        .filter(|(b, _, _)| *b == Buffer::ResponseBody)
        .map(|(_, _, v)| v.clone())
        .collect()
}

fn streamed(vm: &crate::flow::vm::Vm, h: &mut FakeHost, include_usage: bool) -> Exchange {
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, h, &body), Step::Continue);
    ex
}

#[test]
fn the_usage_chunk_the_gateway_asked_for_is_removed_from_the_stream() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = streamed(&vm, &mut h, false);
    let sse = stream("Hi!", true, true);
    let len = sse.len().to_string();
    answer(
        &mut ex,
        &mut h,
        200,
        &[
            ("content-type", "text/event-stream"),
            ("content-length", &len),
        ],
        &sse,
    );
    // The body shrinks: no length is stated.
    assert_eq!(h.response_header("content-length"), None);
    assert_eq!(response_bodies(&h), vec![stream("Hi!", false, true)]);
    assert_eq!(h.response_body, stream("Hi!", false, true));
    ex.finish(&mut h);
    // ... and still counted from.
    assert_eq!(h.prop("llm.prompt_tokens").as_deref(), Some("8"));
    assert_eq!(h.prop("llm.completion_tokens").as_deref(), Some("5"));
    assert_eq!(h.prop("llm.usage_estimated").as_deref(), Some("false"));
    assert_eq!(h.prop("llm.stream").as_deref(), Some("true"));
    assert_eq!(h.prop("llm.ttft_ms").as_deref(), Some("0"));
}

#[test]
fn the_usage_chunk_the_client_asked_for_stays() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = streamed(&vm, &mut h, true);
    // The client's own include_usage: the body went as it was.
    assert!(h.bodies_set.is_empty());
    let sse = stream("Hi!", true, true);
    answer(&mut ex, &mut h, 200, &SSE, &sse);
    assert!(response_bodies(&h).is_empty());
    assert_eq!(h.response_body, sse);
}

/// An Anthropic Messages answer saying `text`, usage 10 + 4.
fn message(text: &str) -> Vec<u8> {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
           "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
           "usage": {"input_tokens": 10, "output_tokens": 4}})
    .to_string()
    .into_bytes()
}

#[test]
fn an_anthropic_providers_answer_reaches_an_openai_client_as_a_chat_completion() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(
        send(&mut ex, &mut h, &hello("claude-sonnet-4-5")),
        Step::Continue
    );
    let body = message("Hi!");
    let len = body.len().to_string();
    h.respond(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", &len),
        ],
        &body,
    );
    assert_eq!(ex.on_response_headers(&mut h), Step::Continue);
    assert_eq!(h.response_header("content-length"), None);
    // A JSON answer is translated whole: held until its end.
    assert_eq!(ex.on_response_body(&mut h, 10, false), Step::Pause);
    assert_eq!(
        ex.on_response_body(&mut h, body.len(), true),
        Step::Continue
    );
    assert_eq!(
        parsed(&h.response_body),
        json!({"id": "msg_1", "object": "chat.completion", "created": NOW_MS / 1000,
               "model": "claude-sonnet-4-5-20250929",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                         "prompt_tokens_details": {"cached_tokens": 0}}})
    );
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.provider").as_deref(), Some("claude"));
    assert_eq!(
        h.prop("llm.response_model").as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(h.prop("llm.response_id").as_deref(), Some("msg_1"));
    assert_eq!(h.prop("llm.total_tokens").as_deref(), Some("14"));
}

fn anthropic_request() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]})
}

#[test]
fn an_openai_answer_reaches_an_anthropic_client_as_a_message() {
    let mut h = host(&messages());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &anthropic_request()), Step::Continue);
    let body = completion("Hi!");
    h.respond(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", "300"),
        ],
        &body,
    );
    assert_eq!(ex.on_response_headers(&mut h), Step::Continue);
    assert_eq!(h.response_header("content-length"), None);
    assert_eq!(ex.on_response_body(&mut h, 10, false), Step::Pause);
    assert_eq!(
        ex.on_response_body(&mut h, body.len(), true),
        Step::Continue
    );
    assert_eq!(
        parsed(&h.response_body),
        json!({"id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o-mini-2024-07-18",
               "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                         "output_tokens": 5}})
    );
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.endpoint").as_deref(), Some("messages"));
    assert_eq!(h.prop("llm.prompt_tokens").as_deref(), Some("8"));
}

#[test]
fn an_anthropic_answer_passes_unchanged_to_an_anthropic_client_and_is_still_counted() {
    let mut h = host(&messages());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let mut body = anthropic_request();
    body["model"] = json!("claude-sonnet-4-5");
    assert_eq!(send(&mut ex, &mut h, &body), Step::Continue);
    let answer_body = message("Hi!");
    let len = answer_body.len().to_string();
    answer(
        &mut ex,
        &mut h,
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", &len),
        ],
        &answer_body,
    );
    assert_eq!(h.response_header("content-length"), Some(len));
    assert!(response_bodies(&h).is_empty());
    assert_eq!(h.response_body, answer_body);
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.prompt_tokens").as_deref(), Some("10"));
    assert_eq!(h.prop("llm.completion_tokens").as_deref(), Some("4"));
    assert_eq!(
        h.prop("llm.response_model").as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
}

#[test]
fn every_answer_carries_the_request_id_and_the_provider_id_is_recorded() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    answer(
        &mut ex,
        &mut h,
        200,
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-openai-1"),
        ],
        &completion("Hi!"),
    );
    assert_eq!(
        h.response_header("x-llm-gateway-request-id").as_deref(),
        Some("req-1")
    );
    // Nothing to change in a plain OpenAI answer.
    assert!(response_bodies(&h).is_empty());
    ex.finish(&mut h);
    assert_eq!(
        h.prop("llm.provider_request_id").as_deref(),
        Some("req-openai-1")
    );
}
