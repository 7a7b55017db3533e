//! Unit tests of the OpenAI client → Anthropic provider direction.

use serde_json::{json, Value};

use super::*;
use crate::sse;
use crate::translate::usage_to_anthropic;

fn target(model: &str, default_max_tokens: u64) -> Target<'_> {
    Target {
        model,
        default_max_tokens,
    }
}

/// A 2xx answer, `created` at that second.
fn answered(created: u64) -> ResponseContext {
    ResponseContext {
        status: 200,
        created,
        counted_input: 0,
        nonce: 0,
        model: String::new(),
    }
}

fn req(v: Value) -> Value {
    serde_json::from_slice(
        &translate_request(v.to_string().as_bytes(), &target("claude-sonnet-4-5", 1024))
            .unwrap()
            .body,
    )
    .unwrap()
}

#[test]
fn multi_turn_with_system_images_and_tools() {
    let out = req(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
            {"role": "user", "content": "Thanks. Summarise."}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "max_completion_tokens": 300,
        "stop": "END",
        "temperature": 0.2,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "u-42"
    }));
    assert_eq!(out["model"], "claude-sonnet-4-5");
    assert_eq!(out["system"], "You are terse.\n\nUse tools.");
    assert_eq!(out["max_tokens"], 300);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["temperature"], 0.2);
    assert_eq!(out["stream"], true);
    assert!(out.get("stream_options").is_none());
    assert_eq!(out["metadata"]["user_id"], "u-42");
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        out["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    let turns = out["messages"].as_array().unwrap();
    // user, assistant (two tool_use), user (two tool_result merged with the next user text).
    assert_eq!(turns.len(), 3);
    assert_eq!(turns[0]["content"][1]["source"]["media_type"], "image/png");
    assert_eq!(turns[1]["content"][1]["input"], json!({"city": "Rome"}));
    assert_eq!(turns[2]["role"], "user");
    assert_eq!(turns[2]["content"][0]["tool_use_id"], "call_1");
    assert_eq!(turns[2]["content"][1]["content"], "24C");
    assert_eq!(turns[2]["content"][2]["text"], "Thanks. Summarise.");
}

#[test]
fn max_tokens_default_and_tool_choice_by_name() {
    let out = req(json!({"messages": [{"role": "user", "content": "hi"}],
                         "tool_choice": {"type": "function", "function": {"name": "f"}}}));
    assert_eq!(out["max_tokens"], 1024);
    assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
    let bad = translate_request(
        br#"{"messages":[{"role":"wizard","content":"x"}]}"#,
        &target("m", 1),
    );
    assert_eq!(bad.unwrap_err().status, 400);
}

/// A recorded-shape Messages response with a tool call and cache usage.
const RESPONSE: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":100,"cache_read_input_tokens":2048,"output_tokens":89}}"#;

#[test]
fn response_with_tool_call_and_cache_usage() {
    let out: Value =
        serde_json::from_slice(&translate_response(RESPONSE.as_bytes(), &answered(7)).unwrap())
            .unwrap();
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["created"], 7);
    let c = &out["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], "Let me check.");
    assert_eq!(
        c["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(out["usage"]["prompt_tokens"], 472 + 100 + 2048);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 2048);
    assert_eq!(
        out["usage"]["prompt_tokens_details"]["cache_creation_tokens"],
        100
    );
    // Back to Anthropic's shape, every figure is where it was.
    assert_eq!(
        usage_to_anthropic(&out["usage"]),
        json!({"input_tokens": 472, "cache_creation_input_tokens": 100,
               "cache_read_input_tokens": 2048, "output_tokens": 89})
    );
    assert_eq!(out["usage"]["completion_tokens"], 89);
    assert_eq!(out["usage"]["total_tokens"], 472 + 100 + 2048 + 89);
}

#[test]
fn errors_become_openai_errors() {
    let e = translate_error(
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    assert_eq!(e.status, 503);
    let e = translate_error(
        &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
    );
    assert_eq!(e.status, 429);
}

/// A recorded-shape Messages stream: text, then a tool call, with cache usage.
const STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\r\n\r\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn translate(chunks: &[&[u8]]) -> String {
    let mut p = sse::Parser::new(1 << 16);
    let mut t = Stream::new(1, true);
    let mut out = String::new();
    for c in chunks {
        p.feed(c, |_, e| {
            out.push_str(&t.event(&String::from_utf8_lossy(e.name), e.data));
        });
    }
    assert!(t.finished());
    out
}

#[test]
fn stream_translates_to_chunks() {
    let out = translate(&[STREAM.as_bytes()]);
    let events: Vec<&str> = out
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["id"] == "msg_1" && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello there");
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    let u = &chunks.last().unwrap()["usage"];
    assert_eq!(u["prompt_tokens"], 35);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 10);
    assert_eq!(u["completion_tokens"], 15);
}

#[test]
fn stream_split_at_every_byte_translates_the_same() {
    let whole = translate(&[STREAM.as_bytes()]);
    let bytes = STREAM.as_bytes();
    for cut in 1..bytes.len() {
        assert_eq!(
            translate(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(translate(&singles), whole);
}

/// Claude on Vertex AI refuses in Google's error shape (quota, credentials): the OpenAI client
/// gets the error its status says, not a generic provider error.
#[test]
fn google_shaped_errors_of_vertex_claude() {
    for (status, google, kind, code) in [
        (429, "RESOURCE_EXHAUSTED", "requests", "rate_limit_exceeded"),
        (
            400,
            "INVALID_ARGUMENT",
            "invalid_request_error",
            "invalid_request",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "permission_error",
            "permission_denied",
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authentication_error",
            "invalid_api_key",
        ),
        (503, "UNAVAILABLE", "server_error", "provider_unavailable"),
    ] {
        let body =
            json!({"error": {"code": status, "message": "Quota exceeded.", "status": google}});
        assert!(is_google_error(&body));
        let context = ResponseContext {
            status,
            ..answered(0)
        };
        let out: Value = serde_json::from_slice(
            &translate_response(body.to_string().as_bytes(), &context).unwrap(),
        )
        .unwrap();
        assert_eq!(out["error"]["type"], kind, "{google}: {out}");
        assert_eq!(out["error"]["code"], code, "{google}: {out}");
        assert_eq!(out["error"]["message"], "Quota exceeded.", "{out}");
    }
    // Anthropic's own shape is still read as Anthropic's.
    let anthropic = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "m"}});
    assert!(!is_google_error(&anthropic));
}

/// Anthropic's error types reach an OpenAI client as the OpenAI type of their status, not all
/// as a generic provider error.
#[test]
fn anthropic_error_types_map_by_their_status() {
    for (ty, kind, code) in [
        (
            "authentication_error",
            "authentication_error",
            "invalid_api_key",
        ),
        ("permission_error", "permission_error", "permission_denied"),
        ("not_found_error", "invalid_request_error", "not_found"),
        ("overloaded_error", "server_error", "provider_unavailable"),
        ("api_error", "server_error", "provider_error"),
        ("something_new", "server_error", "provider_error"),
    ] {
        let e = translate_error(&json!({"type": "error", "error": {"type": ty, "message": "m"}}));
        assert_eq!((e.kind, e.code), (kind, code), "{ty}");
    }
}
