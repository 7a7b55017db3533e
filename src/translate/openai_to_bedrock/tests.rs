//! Unit tests of the OpenAI client → Bedrock (Converse) provider direction.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::translate::{Direction, ResponseTranslator, StreamTranslate, EVENTSTREAM_CONTENT_TYPE};

fn answered(status: u32) -> ResponseContext {
    ResponseContext {
        status,
        created: 7,
        counted_input: 0,
        nonce: 0xabc,
        model: String::new(),
    }
}

fn req(v: Value) -> Value {
    let target = Target {
        model: "anthropic.claude-sonnet-4-5-20250929-v1:0",
        default_max_tokens: 1024,
    };
    let t = translate_request(v.to_string().as_bytes(), &target).unwrap();
    assert_eq!(
        t.headers,
        [(crate::names::CONTENT_LENGTH, Some(t.body.len().to_string()))]
    );
    serde_json::from_slice(&t.body).unwrap()
}

fn refused(v: Value) -> HttpError {
    let target = Target {
        model: "m",
        default_max_tokens: 1,
    };
    translate_request(v.to_string().as_bytes(), &target).unwrap_err()
}

#[test]
fn a_tool_round_trip_with_system_and_images() {
    let out = req(json!({
        "model": "claude", "stream": true, "user": "u-1", "n": 1,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "Thanks."}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": "END"
    }));
    for absent in ["model", "stream", "user", "n", "max_tokens", "tools"] {
        assert!(out.get(absent).is_none(), "{absent}");
    }
    assert_eq!(
        out["system"],
        json!([{"text": "Be terse."}, {"text": "Use tools."}])
    );
    assert_eq!(
        out["inferenceConfig"],
        json!({"maxTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
    );
    let turns = out["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert_eq!(
        turns[0]["content"][1],
        json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}})
    );
    // The blank assistant text is left out: only the tool call.
    assert_eq!(
        turns[1]["content"],
        json!([{"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}}])
    );
    assert_eq!(
        turns[2]["content"],
        json!([{"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
               {"text": "Thanks."}])
    );
    let tools = &out["toolConfig"];
    assert_eq!(tools["toolChoice"], json!({"tool": {"name": "weather"}}));
    let spec = &tools["tools"][0]["toolSpec"];
    assert_eq!(spec["name"], "weather");
    assert!(
        spec.get("description").is_none(),
        "an empty description is left out"
    );
    assert_eq!(
        spec["inputSchema"]["json"]["properties"]["city"]["type"],
        "string"
    );
}

#[test]
fn tool_choice_none_offers_no_tool_unless_the_conversation_has_tool_blocks() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let plain = req(json!({"messages": [{"role": "user", "content": "hi"}],
                           "tools": tools, "tool_choice": "none"}));
    assert!(plain.get("toolConfig").is_none());
    let history = req(json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "tools": tools, "tool_choice": "none"}));
    let tc = &history["toolConfig"];
    assert!(tc.get("toolChoice").is_none());
    assert_eq!(
        tc["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"],
        "object"
    );
    assert_eq!(
        history["messages"][2]["content"][0]["toolResult"]["content"],
        json!([{"text": "a"}, {"text": "b"}])
    );
    let required = req(json!({"messages": [{"role": "user", "content": "hi"}],
                              "tools": tools, "tool_choice": "required"}));
    assert_eq!(required["toolConfig"]["toolChoice"], json!({"any": {}}));
    let auto = req(json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools}));
    assert!(auto["toolConfig"].get("toolChoice").is_none());
    let empty = req(json!({"messages": [{"role": "user", "content": "hi"}], "tools": []}));
    assert!(empty.get("toolConfig").is_none());
}

#[test]
fn structured_output_and_refusals() {
    let out = req(json!({"messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 50, "max_tokens": 10,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}));
    assert_eq!(out["inferenceConfig"], json!({"maxTokens": 50}));
    let def = &out["outputConfig"]["textFormat"];
    assert_eq!(def["type"], "json_schema");
    let schema: Value =
        serde_json::from_str(def["structure"]["jsonSchema"]["schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["properties"]["a"]["type"], "string");
    assert_eq!(def["structure"]["jsonSchema"]["name"], "answer");
    let json_object = req(json!({"messages": [{"role": "user", "content": "hi"}],
                                 "response_format": {"type": "json_object"}}));
    assert!(json_object.get("outputConfig").is_none());
    assert!(json_object.get("inferenceConfig").is_none());
    for (body, param, says) in [
        (json!({"messages": [], "n": 2}), Some("n"), "one choice"),
        (json!({"model": "m"}), Some("messages"), "messages"),
        (
            json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            Some("messages"),
            "data: URL",
        ),
        (
            json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,AA"}}]}]}),
            Some("messages"),
            "svg",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            Some("messages"),
            "input_audio",
        ),
        (
            json!({"messages": [{"role": "function", "content": "x"}]}),
            Some("messages"),
            "function",
        ),
        (
            json!({"messages": [], "response_format": {"type": "json_schema", "json_schema": {}}}),
            Some("response_format"),
            "schema",
        ),
    ] {
        let e = refused(body.clone());
        assert_eq!((e.status, e.param), (400, param), "{body}");
        assert!(e.message.contains(says), "{}: {}", body, e.message);
    }
}

/// A recorded-shape Converse answer: text, a tool call and cache usage.
const RESPONSE: &str = r#"{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"Think.","signature":"sig"}}},{"text":"Let me check."},{"toolUse":{"toolUseId":"tooluse_1","name":"weather","input":{"city":"Paris"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":30,"outputTokens":12,"totalTokens":2090,"cacheReadInputTokens":2000,"cacheWriteInputTokens":48},"metrics":{"latencyMs":900}}"#;

#[test]
fn an_answer_with_a_tool_call_and_cache_usage() {
    let out: Value =
        serde_json::from_slice(&translate_response(RESPONSE.as_bytes(), &answered(200)).unwrap())
            .unwrap();
    assert_eq!(out["id"], "chatcmpl-0000000000000abc");
    assert_eq!(
        (out["object"].as_str(), out["created"].as_u64()),
        (Some("chat.completion"), Some(7))
    );
    let c = &out["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], "Let me check.");
    assert_eq!(c["message"]["reasoning_content"], "Think.");
    assert_eq!(c["message"]["tool_calls"][0]["id"], "tooluse_1");
    assert_eq!(
        c["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    let u = &out["usage"];
    assert_eq!(u["prompt_tokens"], 30 + 2000 + 48);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 2000);
    assert_eq!(u["prompt_tokens_details"]["cache_creation_tokens"], 48);
    assert_eq!(
        (u["completion_tokens"].as_u64(), u["total_tokens"].as_u64()),
        (Some(12), Some(2090))
    );
    assert_eq!(translate_response(b"not json", &answered(200)), None);
}

#[test]
fn errors_keep_the_status_clients_know() {
    for (status, want, kind) in [
        (400, 400, "invalid_request_error"),
        (403, 403, "invalid_request_error"),
        (404, 404, "invalid_request_error"),
        (408, 408, "server_error"),
        (424, 502, "server_error"),
        (429, 429, "requests"),
        (500, 500, "server_error"),
        (503, 503, "server_error"),
        (504, 502, "server_error"),
        (418, 418, "invalid_request_error"),
    ] {
        let e = translate_error(status, &json!({"message": "why"}));
        assert_eq!(
            (e.status, e.kind, e.message.as_str()),
            (want, kind, "why"),
            "{status}"
        );
    }
    let e = translate_error(403, &json!({"Message": "not authorized"}));
    assert_eq!(e.message, "not authorized");
    assert!(translate_error(500, &json!({}))
        .message
        .contains("HTTP 500"));
    let body: Value = serde_json::from_slice(
        &translate_response(br#"{"message":"Too many requests"}"#, &answered(429)).unwrap(),
    )
    .unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        exception_error("throttlingException", &json!({"message": "x"})).status,
        429
    );
    assert_eq!(
        exception_error("modelStreamErrorException", &json!({})).status,
        502
    );
}

/// A ConverseStream frame as Bedrock writes it.
fn frame(message_type: &str, kind: &str, payload: &Value) -> Vec<u8> {
    let type_header = if message_type == "exception" {
        ":exception-type"
    } else {
        ":event-type"
    };
    let f = Frame::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_string().into()),
        ))
        .add_header(Header::new(
            type_header,
            HeaderValue::String(kind.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&f, &mut out).unwrap();
    out
}

fn stream_bytes() -> Vec<u8> {
    [
        frame(
            "event",
            "messageStart",
            &json!({"p": "abc", "role": "assistant"}),
        ),
        frame(
            "event",
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ),
        frame(
            "event",
            "contentBlockStop",
            &json!({"contentBlockIndex": 0}),
        ),
        frame(
            "event",
            "contentBlockStart",
            &json!({"contentBlockIndex": 1,
            "start": {"toolUse": {"toolUseId": "tooluse_9", "name": "weather"}}}),
        ),
        frame(
            "event",
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ),
        frame(
            "event",
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Rome\"}"}}}),
        ),
        frame(
            "event",
            "contentBlockStop",
            &json!({"contentBlockIndex": 1}),
        ),
        frame("event", "messageStop", &json!({"stopReason": "tool_use"})),
        frame(
            "event",
            "metadata",
            &json!({"usage": {"inputTokens": 10, "outputTokens": 5,
            "totalTokens": 15, "cacheReadInputTokens": 4}, "metrics": {"latencyMs": 5}}),
        ),
    ]
    .concat()
}

/// An event-stream answer through the response translator, fed in these pieces.
fn translate(pieces: &[&[u8]]) -> String {
    let mut t = ResponseTranslator::new(
        Direction::OpenaiToBedrock,
        EVENTSTREAM_CONTENT_TYPE,
        answered(200),
    );
    assert!(!t.buffers());
    assert_eq!(t.output_content_type(), Some("text/event-stream"));
    let out: Vec<u8> = pieces.iter().flat_map(|p| t.chunk(p)).collect();
    String::from_utf8(out).unwrap()
}

fn chunks(sse: &str) -> Vec<Value> {
    sse.split("\n\n")
        .filter(|e| !e.is_empty() && *e != "data: [DONE]")
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[test]
fn a_stream_becomes_chunks_then_usage_then_done() {
    let out = translate(&[&stream_bytes()]);
    assert!(out.ends_with("data: [DONE]\n\n"));
    let cs = chunks(&out);
    assert!(cs
        .iter()
        .all(|c| c["id"] == "chatcmpl-0000000000000abc" && c["created"] == 7));
    assert_eq!(
        cs[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(cs[1]["choices"][0]["delta"]["content"], "Hi");
    let call = &cs[2]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (call["index"].as_u64(), call["id"].as_str()),
        (Some(0), Some("tooluse_9"))
    );
    assert_eq!(
        call["function"],
        json!({"name": "weather", "arguments": ""})
    );
    let args: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Rome\"}");
    assert_eq!(cs[5]["choices"][0]["finish_reason"], "tool_calls");
    let usage = &cs[6];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 14);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(usage["usage"]["completion_tokens"], 5);
}

#[test]
fn every_split_of_the_frames_translates_the_same() {
    let bytes = stream_bytes();
    let whole = translate(&[&bytes]);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(translate(&[a, b]), whole, "cut at {cut}");
    }
}

#[test]
fn an_exception_or_a_bad_frame_is_an_error_event_then_the_end() {
    let mut s = translate_stream(&answered(200));
    assert!(!s.finished());
    s.event("messageStart", br#"{"role":"assistant"}"#);
    let out = s.exception("throttlingException", br#"{"message":"Too many tokens"}"#);
    assert!(s.finished());
    let cs = chunks(&out);
    assert_eq!(cs[0]["error"]["code"], "rate_limit_exceeded");
    assert_eq!(cs[0]["error"]["message"], "Too many tokens");
    assert!(out.ends_with("data: [DONE]\n\n"));
    assert_eq!(s.event("metadata", b"{}"), "", "nothing after the end");
    // A frame whose CRC is wrong, after a good one.
    let mut bad = frame(
        "event",
        "contentBlockDelta",
        &json!({"delta": {"text": "x"}}),
    );
    *bad.last_mut().unwrap() ^= 1;
    let bytes = [
        frame("event", "messageStart", &json!({"role": "assistant"})),
        bad,
    ]
    .concat();
    let out = translate(&[&bytes, b"more bytes"]);
    let cs = chunks(&out);
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1]["error"]["code"], "provider_error");
    assert!(cs[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be read"));
    assert!(out.ends_with("data: [DONE]\n\n"));
}

fn any_event() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    let kinds = prop_oneof![
        Just("messageStart".to_string()),
        Just("contentBlockStart".to_string()),
        Just("contentBlockDelta".to_string()),
        Just("contentBlockStop".to_string()),
        Just("messageStop".to_string()),
        Just("metadata".to_string()),
        Just("throttlingException".to_string()),
        "[a-zA-Z]{0,12}",
    ];
    let payloads = prop_oneof![
        Just(
            br#"{"start":{"toolUse":{"toolUseId":"t","name":"n"}},"contentBlockIndex":1}"#.to_vec()
        ),
        Just(br#"{"delta":{"toolUse":{"input":"{\"a\""}},"contentBlockIndex":1}"#.to_vec()),
        Just(br#"{"delta":{"text":"x"},"contentBlockIndex":0}"#.to_vec()),
        Just(br#"{"delta":{"reasoningContent":{"text":"r"}}}"#.to_vec()),
        Just(
            br#"{"usage":{"inputTokens":1e30,"outputTokens":-3,"cacheReadInputTokens":"x"}}"#
                .to_vec()
        ),
        Just(br#"{"stopReason":"guardrail_intervened"}"#.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    (
        prop_oneof![Just("event".to_string()), Just("exception".to_string())],
        kinds,
        payloads,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of frames (known and unknown events, exceptions, odd payloads), cut
    /// anywhere, never panics, translates the same as whole, and is SSE text.
    #[test]
    fn arbitrary_frames_never_panic(
        events in proptest::collection::vec(any_event(), 0..24),
        cut in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes: Vec<u8> = Vec::new();
        for (t, k, p) in &events {
            let f = Frame::new(p.clone())
                .add_header(Header::new(":message-type", HeaderValue::String(t.clone().into())))
                .add_header(Header::new(
                    if t == "exception" { ":exception-type" } else { ":event-type" },
                    HeaderValue::String(k.clone().into()),
                ));
            write_message_to(&f, &mut bytes).unwrap();
        }
        bytes.extend_from_slice(&junk);
        let whole = translate(&[&bytes]);
        let (a, b) = bytes.split_at(cut.index(bytes.len() + 1));
        prop_assert_eq!(&translate(&[a, b]), &whole);
        prop_assert!(whole.is_empty() || whole.ends_with("\n\n"));
    }

    /// Arbitrary bytes as an event stream never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = translate(&[&bytes]);
        let _ = translate_response(&bytes, &answered(200));
        let _ = translate_response(&bytes, &answered(400));
    }
}
