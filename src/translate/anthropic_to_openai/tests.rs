//! Unit tests of the Anthropic client → OpenAI provider direction.

use serde_json::{json, Value};

use super::*;
use crate::sse;
use crate::translate::{Direction, ResponseTranslator};

const TO_GPT: Target<'static> = Target {
    model: "gpt-4o",
    default_max_tokens: 1024,
};

/// An answer to a prompt the gateway counted as 29 tokens.
const ANSWERED: ResponseContext = ResponseContext {
    status: 200,
    created: 0,
    counted_input: 29,
    nonce: 0,
    model: String::new(),
};

#[test]
fn anthropic_client_request_to_openai() {
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 512, "stream": true,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"}]}
        ],
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "stop_sequences": ["###"], "metadata": {"user_id": "u1"}
    });
    let out: Value = serde_json::from_slice(
        &translate_request(body.to_string().as_bytes(), &TO_GPT)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(out["model"], "gpt-4o");
    assert_eq!(out["stream_options"]["include_usage"], true);
    let m = out["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,AAAA"
    );
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "-3C"})
    );
    assert_eq!(out["tool_choice"]["function"]["name"], "weather");
    assert_eq!(out["stop"], json!(["###"]));
    assert_eq!(out["user"], "u1");
}

#[test]
fn openai_response_to_anthropic_client() {
    let r = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "prompt_tokens_details": {"cached_tokens": 64}}});
    let out: Value =
        serde_json::from_slice(&translate_response(r.to_string().as_bytes(), &ANSWERED).unwrap())
            .unwrap();
    assert_eq!(out["type"], "message");
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(out["content"][0]["text"], "Checking.");
    assert_eq!(out["content"][1]["input"], json!({"city": "Oslo"}));
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 36, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 64, "output_tokens": 20})
    );
    let e: Value = serde_json::from_slice(
        &translate_response(
            br#"{"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}"#,
            &ANSWERED,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error");
}

const OPENAI_STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42}}\n\n\
data: [DONE]\n\n";

fn reverse(chunks: &[&[u8]]) -> String {
    let mut p = sse::Parser::new(1 << 16);
    let mut t = Stream::new(29);
    let mut out = String::new();
    for c in chunks {
        p.feed(c, |_, e| out.push_str(&t.data(e.data)));
    }
    assert!(t.finished());
    out
}

#[test]
fn reverse_translation_by_content_type() {
    let mut r = ResponseTranslator::new(
        Direction::AnthropicToOpenai,
        "text/event-stream; charset=utf-8",
        ANSWERED,
    );
    assert!(!r.buffers());
    let bytes = OPENAI_STREAM.as_bytes();
    let mut out = r.chunk(&bytes[..40]);
    out.extend(r.chunk(&bytes[40..]));
    assert_eq!(String::from_utf8(out).unwrap(), reverse(&[bytes]));
    let mut r = ResponseTranslator::new(Direction::AnthropicToOpenai, "application/json", ANSWERED);
    assert!(r.buffers());
    let err =
        br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#;
    let v: Value = serde_json::from_slice(&r.chunk(err)).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["message"], "slow down");
    let local: Value =
        serde_json::from_slice(&local_error_body(&HttpError::invalid_key())).unwrap();
    assert_eq!(local["type"], "error");
    assert_eq!(local["error"]["type"], "authentication_error");
    for (e, want) in [
        (HttpError::model_not_found("m"), "not_found_error"),
        (HttpError::invalid_json("x"), "invalid_request_error"),
        (HttpError::provider_error("x"), "api_error"),
        (HttpError::rate_limited("tokens", "x"), "rate_limit_error"),
    ] {
        let v: Value = serde_json::from_slice(&local_error_body(&e)).unwrap();
        assert_eq!(v["error"]["type"], want, "{v}");
    }
    assert_eq!(
        model_of(br#"{"model":"claude-x","messages":[]}"#).unwrap(),
        "claude-x"
    );
    assert_eq!(model_of(br#"{"messages":[]}"#).unwrap_err().status, 400);
    assert_eq!(model_of(b"[1]").unwrap_err().status, 400);
}

#[test]
fn openai_stream_to_anthropic_events_at_every_split() {
    let whole = reverse(&[OPENAI_STREAM.as_bytes()]);
    let mut p = sse::Parser::new(1 << 16);
    let mut events: Vec<(String, Value)> = Vec::new();
    p.feed(whole.as_bytes(), |_, e| {
        events.push((
            String::from_utf8_lossy(e.name).into_owned(),
            serde_json::from_slice(e.data).unwrap(),
        ));
    });
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(events.iter().all(|(n, v)| v["type"] == n.as_str()));
    assert_eq!(events[4].1["content_block"]["name"], "weather");
    let args: String = events
        .iter()
        .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
    // message_start announces the prompt as counted; message_delta carries the provider's
    // usage of the whole answer, as Anthropic's own streams do.
    assert_eq!(
        events[0].1["message"]["usage"],
        json!({"input_tokens": 29, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": 0})
    );
    assert_eq!(
        events[8].1["usage"],
        json!({"input_tokens": 30, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": 12})
    );
    let bytes = OPENAI_STREAM.as_bytes();
    for cut in 1..bytes.len() {
        assert_eq!(
            reverse(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
}

/// An in-band error ends the Messages stream: after its `error` event, no block stop, no
/// `message_delta` and no `message_stop` (which would tell the client the message is whole).
#[test]
fn an_in_band_error_ends_the_stream() {
    let stream = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" more\"},\"finish_reason\":null}]}\n\n\
data: [DONE]\n\n";
    let out = reverse(&[stream.as_bytes()]);
    let names: Vec<&str> = out
        .split("\n\n")
        .filter_map(|e| e.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ],
        "{out}"
    );
    assert!(out.contains("\"rate_limit_error\""), "{out}");
    assert!(!out.contains(" more"), "{out}");
}

/// A provider's error takes the Messages API's type for its status, as the gateway's own do.
#[test]
fn provider_errors_are_typed_by_status() {
    let body =
        br#"{"error":{"message":"denied","type":"invalid_request_error","code":"access_denied"}}"#;
    for (status, kind) in [
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (400, "invalid_request_error"),
    ] {
        let context = ResponseContext { status, ..ANSWERED };
        let v: Value =
            serde_json::from_slice(&translate_response(body, &context).unwrap()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind, "{status}");
        assert_eq!(v["error"]["message"], "denied");
    }
}
