//! Unit tests of the Responses direction; its golden cases are in
//! `tests/golden/responses_to_chat/`. The chains that reach an Anthropic provider
//! (Responses → chat → Messages, and back) are tested here.

use serde_json::{json, Value};

use super::*;
use crate::translate::{
    openai_to_anthropic, Direction, ResponseContext, ResponseTranslator, StreamTranslate, Target,
};

const TARGET: Target<'static> = Target {
    model: "gpt-4o-mini",
    default_max_tokens: 1024,
};

const ANSWERED: ResponseContext = ResponseContext {
    status: 200,
    created: 1_700_000_000,
    counted_input: 0,
    nonce: 0,
    model: String::new(),
};

fn request(v: Value) -> (Value, ResponsesEcho) {
    let t = translate_request(v.to_string().as_bytes(), &TARGET).unwrap();
    (serde_json::from_slice(&t.body).unwrap(), t.echo.unwrap())
}

fn refused(v: Value) -> crate::error::HttpError {
    translate_request(v.to_string().as_bytes(), &TARGET).unwrap_err()
}

/// An SSE text's events: name and data.
fn events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            let name = b.lines().next().unwrap().strip_prefix("event: ").unwrap();
            let data = b.lines().nth(1).unwrap().strip_prefix("data: ").unwrap();
            (name.to_string(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn chunk(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// A Responses conversation with a function call and its output, through both request
/// translations, is a Messages request with the call and its result.
#[test]
fn a_tool_round_trip_reaches_an_anthropic_provider() {
    let (chat, _) = request(json!({
        "model": "claude", "instructions": "Be brief.", "max_output_tokens": 300,
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                   "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false,
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
        ],
    }));
    let anthropic = openai_to_anthropic::translate_request(
        chat.to_string().as_bytes(),
        &Target {
            model: "claude-sonnet-4-5",
            default_max_tokens: 1024,
        },
    )
    .unwrap();
    let m: Value = serde_json::from_slice(&anthropic.body).unwrap();
    assert_eq!(m["system"], "Be brief.");
    assert_eq!(m["max_tokens"], 300);
    assert_eq!(
        m["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );
    assert_eq!(m["tools"][0]["name"], "get_weather");
    assert_eq!(
        m["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(
        m["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1",
                "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                "content": "18C, sunny"}]},
        ])
    );
}

/// An Anthropic answer with a tool call, through both answer translations, is a `response`
/// with the call, and the cache figures land in Responses usage.
#[test]
fn an_anthropic_answer_reaches_a_responses_client() {
    let anthropic = json!({"id": "msg_01", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Paris"}}],
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
                  "cache_creation_input_tokens": 3, "output_tokens": 7}});
    let chat = openai_to_anthropic::translate_response(anthropic.to_string().as_bytes(), &ANSWERED)
        .unwrap();
    let (_, echo) = request(json!({"model": "m", "input": "x",
        "tools": [{"type": "function", "name": "get_weather"}]}));
    let r: Value =
        serde_json::from_slice(&translate_response(&chat, &ANSWERED, &echo).unwrap()).unwrap();
    assert_eq!(r["id"], "resp_msg_01");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"][0]["content"][0]["text"], "Checking.");
    assert_eq!(r["output"][1]["type"], "function_call");
    assert_eq!(r["output"][1]["call_id"], "toolu_1");
    assert_eq!(r["output"][1]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(r["tools"][0]["name"], "get_weather");
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 18, "output_tokens": 7, "total_tokens": 25,
               "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 3},
               "output_tokens_details": {"reasoning_tokens": 0}})
    );
}

/// An Anthropic stream, through both stream translators as the filter chains them, whole and
/// in pieces, is the Responses event sequence with the call's arguments whole at the end.
#[test]
fn an_anthropic_stream_reaches_a_responses_client() {
    let anthropic = [
        json!({"type": "message_start", "message": {"id": "msg_02", "model": "claude",
               "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
               "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]
    .iter()
    .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
    .collect::<String>();
    let ct = "text/event-stream";
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut from = ResponseTranslator::new(Direction::OpenaiToAnthropic, ct, ANSWERED);
        let mut to = ResponseTranslator::with_echo(
            Direction::ResponsesToChat,
            ct,
            ANSWERED,
            ResponsesEcho::default(),
        );
        pieces
            .flat_map(|p| to.chunk(&from.chunk(p)))
            .collect::<Vec<u8>>()
    };
    let whole = run(&mut std::iter::once(anthropic.as_bytes()));
    assert_eq!(run(&mut anthropic.as_bytes().chunks(5)), whole);
    let ev = events(std::str::from_utf8(&whole).unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let (_, done) = ev.last().unwrap();
    let r = &done["response"];
    assert_eq!(r["id"], "resp_msg_02");
    assert_eq!(r["output"][0]["arguments"], "{\"a\":1}");
    assert_eq!(r["output"][0]["call_id"], "toolu_2");
    assert_eq!(r["usage"]["input_tokens"], 12);
    assert_eq!(r["usage"]["output_tokens"], 9);
}

#[test]
fn every_event_is_numbered_from_zero() {
    let mut s = translate_stream(&ANSWERED, ResponsesEcho::default());
    let mut out = String::new();
    for c in [
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"refusal": "No"}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"tool_calls":
            [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{}"}}]}}]}),
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {},
            "finish_reason": "tool_calls"}]}),
    ] {
        out.push_str(&s.event("", &chunk(c)));
    }
    out.push_str(&s.event("", b"[DONE]"));
    assert!(s.finished());
    let ev = events(&out);
    for (n, (name, data)) in ev.iter().enumerate() {
        assert_eq!(data["sequence_number"], n, "{name}");
        assert_eq!(data["type"], name.as_str());
    }
    let (_, last) = ev.last().unwrap();
    let output = &last["response"]["output"];
    assert_eq!(
        output[0]["content"][0],
        json!({"type": "output_text", "text": "Hi",
                                               "annotations": []})
    );
    assert_eq!(
        output[0]["content"][1],
        json!({"type": "refusal", "refusal": "No"})
    );
    assert_eq!(output[1]["id"], "fc_1_1");
}

#[test]
fn a_stream_cut_before_done_claims_no_answer() {
    let mut s = translate_stream(&ANSWERED, ResponsesEcho::default());
    let out = s.event(
        "",
        &chunk(json!({"id": "chatcmpl-2", "choices": [{"index": 0,
            "delta": {"content": "Hel"}}]})),
    );
    assert!(!s.finished());
    assert!(!out.contains("response.completed"));
    assert!(!out.contains("output_item.done"));
}

#[test]
fn after_response_failed_nothing_more_is_sent() {
    let mut s = translate_stream(&ANSWERED, ResponsesEcho::default());
    let out = s.event(
        "",
        &chunk(json!({"error": {"message": "overloaded", "type": "server_error"}})),
    );
    let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
    let more = json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}}]});
    assert_eq!(s.event("", &chunk(more)), "");
    assert!(!s.finished());
    assert_eq!(s.event("", b"[DONE]"), "");
    assert!(s.finished());
}

#[test]
fn a_late_piece_of_a_finished_call_is_dropped() {
    let mut s = translate_stream(&ANSWERED, ResponsesEcho::default());
    let call = |index: u64, id: Option<&str>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = id.into();
            c["function"]["name"] = "f".into();
        }
        chunk(json!({"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [c]}}]}))
    };
    s.event("", &call(0, Some("call_a"), "{"));
    s.event("", &call(1, Some("call_b"), "{}"));
    assert_eq!(s.event("", &call(0, None, "}")), "");
    // A provider that gives calls no id gets ids made from the answer's.
    let out = s.event("", &call(2, None, "{}"));
    assert!(out.contains("\"call_id\":\"call_x_2\""), "{out}");
}

#[test]
fn the_same_chat_answer_has_the_same_ids_as_json_and_as_a_stream() {
    let body = json!({"id": "chatcmpl-abc", "created": 5, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                     "finish_reason": "stop"}]});
    let echo = ResponsesEcho::default();
    let r: Value = serde_json::from_slice(
        &translate_response(body.to_string().as_bytes(), &ANSWERED, &echo).unwrap(),
    )
    .unwrap();
    assert_eq!(r["id"], "resp_abc");
    assert_eq!(r["created_at"], 5);
    assert_eq!(r["output"][0]["id"], "msg_abc_0");
    let mut s = translate_stream(&ANSWERED, echo);
    s.event(
        "",
        &chunk(json!({"id": "chatcmpl-abc", "created": 5, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]})),
    );
    let done = s.event("", b"[DONE]");
    let (_, last) = events(&done).pop().unwrap();
    assert_eq!(last["response"]["id"], r["id"]);
    assert_eq!(last["response"]["output"], r["output"]);
}

#[test]
fn the_echo_repeats_the_request_or_openais_defaults() {
    let (_, none) = request(json!({"model": "m", "input": "x"}));
    assert_eq!(none, ResponsesEcho::default());
    let r = Value::Object(response::response_object(
        &none,
        &response::Head::default(),
        "completed",
        Vec::new(),
        Value::Null,
    ));
    assert_eq!(r["tools"], json!([]));
    assert_eq!(r["tool_choice"], "auto");
    assert_eq!(r["parallel_tool_calls"], true);
    assert_eq!(r["text"], json!({"format": {"type": "text"}}));
    assert_eq!(r["store"], false);
    assert_eq!(r["metadata"], json!({}));
    let (_, set) = request(json!({"model": "m", "input": "x", "store": true,
        "instructions": "I", "temperature": 0.5, "top_p": 0.9, "max_output_tokens": 9,
        "metadata": {"k": "v"}, "user": "u", "parallel_tool_calls": false,
        "reasoning": {"effort": "low"}, "tool_choice": "none"}));
    let r = Value::Object(set.fields());
    assert_eq!(r["instructions"], "I");
    assert_eq!(r["temperature"], 0.5);
    assert_eq!(r["top_p"], 0.9);
    assert_eq!(r["max_output_tokens"], 9);
    assert_eq!(r["metadata"], json!({"k": "v"}));
    assert_eq!(r["user"], "u");
    assert_eq!(r["parallel_tool_calls"], false);
    assert_eq!(r["reasoning"], json!({"effort": "low"}));
    assert_eq!(r["tool_choice"], "none");
}

#[test]
fn without_tools_chat_gets_no_tool_choice_nor_parallel_tool_calls() {
    let (chat, _) = request(json!({"model": "m", "input": "x", "tools": [],
        "tool_choice": "required", "parallel_tool_calls": true}));
    assert!(chat.get("tools").is_none());
    assert!(chat.get("tool_choice").is_none());
    assert!(chat.get("parallel_tool_calls").is_none());
}

#[test]
fn shapes_chat_cannot_take_are_refused_naming_the_field() {
    for (body, param, says) in [
        (json!({"model": "m"}), "input", "'input'"),
        (
            json!({"model": "m", "input": 3}),
            "input",
            "'input' must be",
        ),
        (
            json!({"model": "m", "input": ["x"]}),
            "input",
            "'input[0]' must be an object",
        ),
        (
            json!({"model": "m", "input": [{"role": "user"}]}),
            "input",
            "'input[0].content'",
        ),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input",
            "'tool'",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f",
            "arguments": "{}"}]}),
            "input",
            "'input[0].call_id'",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c",
            "output": [{"type": "input_image", "image_url": "u"}]}]}),
            "input",
            "input_image",
        ),
        (
            json!({"model": "m", "input": [{"role": "system",
            "content": [{"type": "input_image", "image_url": "u"}]}]}),
            "input",
            "takes only text",
        ),
        (
            json!({"model": "m", "input": [{"type": "computer_call", "call_id": "c"}]}),
            "input",
            "'computer_call'",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file",
            "file_url": "https://x/a.pdf"}]}]}),
            "input",
            "'file_url'",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file",
            "file_id": "file-1"}]}]}),
            "input",
            "'file_id'",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": "hot"}),
            "temperature",
            "a number",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": -1}),
            "max_output_tokens",
            "non-negative",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"k": 1}}),
            "metadata",
            "strings",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools",
            "'tools[0].name'",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "mcp", "server_label": "s"}]}),
            "tools",
            "'mcp'",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
            "tool_choice",
            "'web_search_preview'",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
            "'auto'",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema",
            "name": "n"}}}),
            "text.format.schema",
            "text.format.schema",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "grammar"}}}),
            "text.format",
            "'grammar'",
        ),
        (
            json!({"model": "m", "input": "x", "reasoning": {"effort": 1}}),
            "reasoning.effort",
            "a string",
        ),
        (
            json!({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}),
            "prompt",
            "stores no responses",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
            "stores no responses",
        ),
    ] {
        let e = refused(body.clone());
        assert_eq!(e.status, 400, "{body}");
        assert_eq!(e.param, Some(param), "{body}: {}", e.message);
        assert!(e.message.contains(says), "{body}: {}", e.message);
    }
    assert_eq!(refused(json!([1])).code, "invalid_json");
}

#[test]
fn what_is_not_honoured_is_accepted() {
    let (chat, _) = request(json!({"model": "m", "input": "x", "store": true,
        "include": ["reasoning.encrypted_content"], "truncation": "auto",
        "max_tool_calls": 3, "top_logprobs": 2, "service_tier": "auto", "background": false,
        "previous_response_id": null, "stream_options": {"include_obfuscation": false}}));
    assert_eq!(
        chat,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    );
}

#[test]
fn errors_keep_openais_shape() {
    assert_eq!(
        translate_error(&json!({"error": {"message": "m", "type": "t", "code": "c"}})),
        json!({"error": {"message": "m", "type": "t", "param": null, "code": "c"}})
    );
    assert_eq!(
        translate_error(&json!({"detail": "Not found"})),
        json!({"error": {"message": "Not found", "type": "server_error", "param": null,
                         "code": null}})
    );
    let failed = |e: Value| failed_code(&error_body(&e, "server_error"));
    assert_eq!(
        failed(json!({"error": {"type": "requests"}})),
        "rate_limit_exceeded"
    );
    assert_eq!(
        failed(json!({"error": {"code": "rate_limit_exceeded"}})),
        "rate_limit_exceeded"
    );
    assert_eq!(
        failed(json!({"error": {"type": "invalid_request_error"}})),
        "invalid_prompt"
    );
    assert_eq!(
        failed(json!({"error": {"code": "context_length_exceeded"}})),
        "server_error"
    );
}

#[test]
fn usage_at_the_largest_figures_saturates() {
    let max = u64::MAX;
    let u = usage_to_responses(&json!({"prompt_tokens": max, "completion_tokens": 2}));
    assert_eq!(u["total_tokens"], max);
    let u = usage_to_responses(&json!({"prompt_tokens": 3, "completion_tokens": 2,
        "total_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 1}}));
    assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 1);
    assert_eq!(u["total_tokens"], 5);
}
