//! The completion conversions against recorded and generated streams and completions.

use super::assemble::EVENT_SLACK;
use super::*;
use crate::sse::tests::RECORDED;
use proptest::prelude::*;
use serde_json::json;

const MAX: usize = 1 << 20;

fn assemble(stream: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut a = Assembler::new(max);
    a.feed(stream);
    a.finish()
}

fn assemble_value(stream: &str) -> Value {
    serde_json::from_slice(&assemble(stream.as_bytes(), MAX).expect("storable")).unwrap()
}

/// An SSE stream of these chunks, each with OpenAI's envelope, then `[DONE]`.
fn stream(chunks: &[Value]) -> String {
    let mut s = String::new();
    for c in chunks {
        let mut full = json!({"id": "chatcmpl-AbC123", "object": "chat.completion.chunk",
            "created": 1741570283, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035"});
        for (k, v) in c.as_object().unwrap() {
            full[k] = v.clone();
        }
        s.push_str(&format!("data: {full}\n\n"));
    }
    s + "data: [DONE]\n\n"
}

fn delta(index: u32, delta: Value, finish: Value) -> Value {
    json!({"choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

fn two_choices() -> String {
    stream(&[
        delta(
            0,
            json!({"role": "assistant", "content": "", "refusal": null}),
            json!(null),
        ),
        delta(
            1,
            json!({"role": "assistant", "content": "", "refusal": null}),
            json!(null),
        ),
        delta(1, json!({"content": "Bonjour"}), json!(null)),
        delta(0, json!({"content": "Hello"}), json!(null)),
        delta(0, json!({"content": " there"}), json!(null)),
        delta(1, json!({"content": " à tous"}), json!(null)),
        delta(1, json!({}), json!("stop")),
        delta(0, json!({}), json!("length")),
    ])
}

fn tool_stream() -> String {
    let call = |i: u32, args: &str| {
        delta(
            0,
            json!({"tool_calls": [{"index": i, "function": {"arguments": args}}]}),
            json!(null),
        )
    };
    stream(&[
        delta(
            0,
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}], "refusal": null}),
            json!(null),
        ),
        call(0, "{\"lo"),
        call(0, "cation\": \"Par"),
        call(0, "is, France\"}"),
        delta(
            0,
            json!({"tool_calls": [{"index": 1, "id": "call_ABzVjDnCh5fQ9wZlLoI5Wb3p",
                "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            json!(null),
        ),
        call(1, "{\"tz\":"),
        call(1, "\"Europe/Paris\"}"),
        delta(0, json!({}), json!("tool_calls")),
    ])
}

fn refusal_stream() -> String {
    stream(&[
        delta(
            0,
            json!({"role": "assistant", "content": null, "refusal": ""}),
            json!(null),
        ),
        delta(0, json!({"refusal": "I'm sorry, "}), json!(null)),
        delta(
            0,
            json!({"refusal": "I can't help with that."}),
            json!(null),
        ),
        delta(0, json!({}), json!("stop")),
    ])
}

#[test]
fn recorded_content_stream_with_usage() {
    assert_eq!(
        assemble_value(RECORDED),
        json!({"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion",
            "created": 1741570283, "model": "gpt-4o-2024-08-06", "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "Hello! How can I assist you today?"},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}})
    );
    // CRLF line ends read the same.
    assert_eq!(
        assemble_value(&RECORDED.replace('\n', "\r\n")),
        assemble_value(RECORDED)
    );
}

#[test]
fn two_choices_sorted_by_index() {
    let v = assemble_value(&two_choices());
    assert_eq!(
        v["choices"],
        json!([
            {"index": 0, "message": {"role": "assistant", "content": "Hello there"},
             "logprobs": null, "finish_reason": "length"},
            {"index": 1, "message": {"role": "assistant", "content": "Bonjour à tous"},
             "logprobs": null, "finish_reason": "stop"},
        ])
    );
    assert_eq!(v.get("usage"), None);
    assert_eq!(v["id"], "chatcmpl-AbC123");
    assert_eq!(v.get("service_tier"), None);
}

#[test]
fn tool_calls_with_split_arguments() {
    let v = assemble_value(&tool_stream());
    assert_eq!(
        v["choices"][0],
        json!({"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris, France\"}"}},
            {"id": "call_ABzVjDnCh5fQ9wZlLoI5Wb3p", "type": "function",
             "function": {"name": "get_time", "arguments": "{\"tz\":\"Europe/Paris\"}"}},
        ]}, "logprobs": null, "finish_reason": "tool_calls"})
    );
    let s = summary(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(s.complete && s.tool_calls && s.usage.is_none());
}

#[test]
fn refusal() {
    let v = assemble_value(&refusal_stream());
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": null, "refusal": "I'm sorry, I can't help with that."})
    );
}

#[test]
fn tolerated_extras() {
    // Azure's prompt-filter chunk first (empty id, zero time, no choices), content filter
    // results per choice, `usage: null`, empty or null fields the completion does not carry,
    // keep-alive comments, an obfuscation field, a repeated tool call id and name.
    let s = format!(
        ": keep-alive\n\ndata: {}\n\n{}",
        json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}),
        stream(&[
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                "reasoning_content": null, "annotations": [], "function_call": null,
                "audio": {"id": null}}, "content_filter_results": {}, "finish_reason": null}],
                "usage": null, "obfuscation": "x7Qz"}),
            delta(
                0,
                json!({"content": "Hi", "tool_calls": [{"index": 0, "id": "call_1",
                "type": "function", "function": {"name": "f", "arguments": "{"}}]}),
                json!(null)
            ),
            delta(
                0,
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "}"}}]}),
                json!(null)
            ),
            delta(0, json!({}), json!("tool_calls")),
        ])
    )
    .replacen("\"object\":\"\",", "", 1);
    let v = assemble_value(&s);
    assert_eq!(v["id"], "chatcmpl-AbC123");
    assert_eq!(v["created"], 1741570283);
    assert_eq!(v["choices"][0]["message"]["content"], "Hi");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"],
        json!({"name": "f", "arguments": "{}"})
    );
}

fn without(s: &str, needle: &str) -> String {
    s.split_inclusive("\n\n")
        .filter(|e| !e.contains(needle))
        .collect()
}

#[test]
fn incomplete_streams_are_not_stored() {
    // No [DONE].
    assert_eq!(assemble(without(RECORDED, "[DONE]").as_bytes(), MAX), None);
    // No finish reason (for one choice of two).
    assert_eq!(
        assemble(without(RECORDED, "\"stop\"").as_bytes(), MAX),
        None
    );
    assert_eq!(
        assemble(without(&two_choices(), "\"stop\"").as_bytes(), MAX),
        None
    );
    // No choices at all.
    assert_eq!(
        assemble(
            stream(&[json!({"choices": [], "usage": {"total_tokens": 1}})]).as_bytes(),
            MAX
        ),
        None
    );
    // Cut anywhere before the end of [DONE].
    let done = RECORDED.find("[DONE]").unwrap() + 6;
    for cut in [0, 10, RECORDED.len() / 2, done, done + 1] {
        assert_eq!(assemble(&RECORDED.as_bytes()[..cut], MAX), None, "{cut}");
    }
    assert!(assemble(&RECORDED.as_bytes()[..done + 2], MAX).is_some());
    // An error: as a named event, or as an error object mid-stream.
    let (head, tail) = RECORDED.split_at(RECORDED.find("data: [DONE]").unwrap());
    for err in [
        "event: error\ndata: {\"message\":\"overloaded\"}\n\n",
        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n",
    ] {
        assert_eq!(assemble(format!("{head}{err}{tail}").as_bytes(), MAX), None);
    }
    // A chunk that is not JSON, not a chat chunk, or has what a completion cannot carry.
    for bad in [
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"\n\n".to_string(),
        "data: \n\n".to_string(),
        format!(
            "data: {}\n\n",
            json!({"object": "text_completion", "choices": [{"index": 0, "text": "x"}]})
        ),
        format!(
            "data: {}\n\n",
            delta(0, json!({"reasoning_content": "hmm"}), json!(null))
        ),
        format!(
            "data: {}\n\n",
            delta(0, json!({"function_call": {"name": "f"}}), json!(null))
        ),
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {},
            "logprobs": {"content": [{"token": "a", "logprob": -0.1}]}}]})
        ),
        format!(
            "data: {}\n\n",
            delta(
                0,
                json!({"tool_calls": [{"id": "c", "function": {"name": "f"}}]}),
                json!(null)
            )
        ),
        format!(
            "data: {}\n\n",
            delta(
                0,
                json!({"tool_calls": [{"index": 0, "type": "custom", "custom": {"name": "f"}}]}),
                json!(null)
            )
        ),
        format!(
            "data: {}\n\n",
            delta(
                0,
                json!({"tool_calls": [{"index": 0, "function": {"name": "get_"}}]}),
                json!(null)
            )
        ) + &format!(
            "data: {}\n\n",
            delta(
                0,
                json!({"tool_calls": [{"index": 0, "function": {"name": "weather"}}]}),
                json!(null)
            )
        ),
    ] {
        let mut a = Assembler::new(MAX);
        a.feed(head.as_bytes());
        assert!(!a.gave_up());
        a.feed(bad.as_bytes());
        assert!(a.gave_up(), "{bad}");
        a.feed(tail.as_bytes());
        assert_eq!(a.finish(), None, "{bad}");
    }
}

#[test]
fn truncated_event_is_not_stored() {
    // An event past the parser's bound (max_bytes plus slack) is cut: not stored, even
    // though the field it carries would have been ignored.
    let max = 4096;
    let (head, tail) = RECORDED.split_at(RECORDED.find("data: [DONE]").unwrap());
    let padded = |n: usize| {
        format!(
            "{head}data: {}\n\n{tail}",
            json!({"choices": [], "obfuscation": "x".repeat(n)})
        )
    };
    assert!(assemble(padded(10).as_bytes(), max).is_some());
    assert_eq!(assemble(padded(max + EVENT_SLACK).as_bytes(), max), None);
}

#[test]
fn size_bound() {
    let piece = "y".repeat(1000);
    let mut chunks = vec![delta(0, json!({"role": "assistant"}), json!(null))];
    chunks.extend((0..10).map(|_| delta(0, json!({ "content": piece }), json!(null))));
    chunks.push(delta(0, json!({}), json!("stop")));
    let s = stream(&chunks);
    let whole = assemble(s.as_bytes(), 100_000).unwrap();
    assert!(whole.len() > 10_000);
    assert_eq!(assemble(s.as_bytes(), whole.len()), Some(whole.clone()));
    assert_eq!(assemble(s.as_bytes(), whole.len() - 1), None);
    // Over the bound mid-stream: it gives up and lets go of what it held.
    let mut a = Assembler::new(5000);
    a.feed(s.as_bytes());
    assert!(a.gave_up());
    assert!(a.state.choices.is_empty());
    assert!(a.parser.buffered() == 0);
    assert_eq!(a.finish(), None);
}

#[test]
fn replay_looks_like_openai() {
    let stored = assemble(RECORDED.as_bytes(), MAX).unwrap();
    let sse = String::from_utf8(to_sse(&stored, true).unwrap()).unwrap();
    let events: Vec<&str> = sse.split_terminator("\n\n").collect();
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    assert_eq!(chunks.len(), 4);
    for c in &chunks {
        assert_eq!(c["id"], "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["created"], 1741570283);
        assert_eq!(c["model"], "gpt-4o-2024-08-06");
        assert_eq!(c["system_fingerprint"], "fp_fc9f1d7035");
        assert_eq!(c["service_tier"], "default");
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])
    );
    assert_eq!(chunks[0]["usage"], Value::Null);
    assert!(chunks[0].as_object().unwrap().contains_key("usage"));
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "Hello! How can I assist you today?"})
    );
    assert_eq!(
        chunks[2]["choices"],
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(chunks[3]["choices"], json!([]));
    assert_eq!(chunks[3]["usage"]["total_tokens"], 28);

    // Without include_usage: no usage field and no usage chunk.
    let sse = String::from_utf8(to_sse(&stored, false).unwrap()).unwrap();
    assert!(!sse.contains("usage"));
    assert_eq!(sse.matches("data: ").count(), 4);

    // Long content comes in pieces, cut between characters (first, 3 pieces, last, DONE).
    let long_text = format!("a{}", "é".repeat(1500));
    let long = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": long_text},
                     "finish_reason": "stop"}]});
    let sse = to_sse(long.to_string().as_bytes(), false).unwrap();
    assert_eq!(
        String::from_utf8(sse.clone())
            .unwrap()
            .matches("data: ")
            .count(),
        6
    );
    let back: Value = serde_json::from_slice(&assemble(&sse, MAX).unwrap()).unwrap();
    assert_eq!(back["choices"][0]["message"]["content"], long_text);
}

#[test]
fn replay_of_a_provider_response() {
    // A non-streamed OpenAI response as the API returns it (null refusal, empty
    // annotations) and one translated from Anthropic (no logprobs, no fingerprint).
    let openai = json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
        "created": 1741569952, "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I assist you today?",
            "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default"});
    let back: Value = serde_json::from_slice(
        &assemble(&to_sse(openai.to_string().as_bytes(), true).unwrap(), MAX).unwrap(),
    )
    .unwrap();
    let mut expected = openai.clone();
    let m = expected["choices"][0]["message"].as_object_mut().unwrap();
    m.remove("refusal");
    m.remove("annotations");
    assert_eq!(back, expected);
    // As the API sends it, pretty-printed: the usage's line breaks must not cut its event.
    let pretty = serde_json::to_vec_pretty(&openai).unwrap();
    let back: Value =
        serde_json::from_slice(&assemble(&to_sse(&pretty, true).unwrap(), MAX).unwrap()).unwrap();
    assert_eq!(back, expected);
    let s = summary(openai.to_string().as_bytes()).unwrap();
    assert!(s.complete && !s.tool_calls);
    assert_eq!(
        s.usage.map(|u| (u.prompt_tokens, u.total_tokens)),
        Some((Some(19), Some(29)))
    );

    let anthropic = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
        "content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Oslo"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#;
    let answered = crate::translate::ResponseContext {
        status: 200,
        created: 1700000000,
        counted_input: 0,
        nonce: 0,
        model: String::new(),
    };
    let translated =
        crate::translate::openai_to_anthropic::translate_response(anthropic, &answered).unwrap();
    let s = summary(&translated).unwrap();
    assert!(s.complete && s.tool_calls);
    let back: Value =
        serde_json::from_slice(&assemble(&to_sse(&translated, true).unwrap(), MAX).unwrap())
            .unwrap();
    let mut expected: Value = serde_json::from_slice(&translated).unwrap();
    expected["choices"][0]["logprobs"] = Value::Null;
    assert_eq!(back, expected);
}

#[test]
fn what_cannot_be_replayed_or_summarized() {
    let base = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]});
    assert!(to_sse(base.to_string().as_bytes(), true).is_some());
    let with = |path: &[&str], v: Value| {
        let mut b = base.clone();
        let mut at = &mut b;
        for p in &path[..path.len() - 1] {
            at = if let Ok(i) = p.parse::<usize>() {
                &mut at[i]
            } else {
                &mut at[*p]
            };
        }
        at[path[path.len() - 1]] = v;
        b.to_string()
    };
    for bad in [
        with(&["object"], json!("chat.completion.chunk")),
        with(&["choices"], json!(null)),
        with(
            &["choices", "0", "logprobs"],
            json!({"content": [{"token": "x", "logprob": 0}]}),
        ),
        with(
            &["choices", "0", "message", "function_call"],
            json!({"name": "f", "arguments": "{}"}),
        ),
        with(
            &["choices", "0", "message", "audio"],
            json!({"id": "audio_1", "data": "UklGR"}),
        ),
        with(
            &["choices", "0", "message", "tool_calls"],
            json!([{"id": "c1", "type": "custom", "custom": {"name": "f", "input": "x"}}]),
        ),
        r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#.to_string(),
        "not json".to_string(),
    ] {
        assert_eq!(to_sse(bad.as_bytes(), false), None, "{bad}");
    }
    for not_completion in [
        with(&["object"], json!("list")),
        r#"{"error":{"message":"bad"}}"#.to_string(),
        "[]".to_string(),
    ] {
        assert_eq!(summary(not_completion.as_bytes()), None);
    }
    // Summaries of the readable but unusual.
    let s = |b: String| summary(b.as_bytes()).unwrap();
    assert!(!s(with(&["choices", "0", "finish_reason"], json!(null))).complete);
    assert!(!s(with(&["choices"], json!([]))).complete);
    let f = s(with(
        &["choices", "0", "message", "function_call"],
        json!({"name": "f", "arguments": "{}"}),
    ));
    assert!(f.complete && f.tool_calls);
    assert!(
        s(with(
            &["choices", "0", "finish_reason"],
            json!("tool_calls")
        ))
        .tool_calls
    );
    assert!(!s(with(&["choices", "0", "message", "tool_calls"], json!([]))).tool_calls);
    assert_eq!(
        s(with(
            &["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 2}})
        ))
        .usage
        .map(|u| u.cached()),
        Some(2)
    );
}

fn split_feed(stream: &[u8], cuts: &[usize]) -> Option<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut a = Assembler::new(MAX);
    let mut prev = 0;
    for c in cuts {
        a.feed(&stream[prev..c]);
        prev = c;
    }
    a.feed(&stream[prev..]);
    a.finish()
}

#[test]
fn every_single_split() {
    for s in [RECORDED.to_string(), tool_stream()] {
        let whole = assemble(s.as_bytes(), MAX).unwrap();
        for cut in 0..=s.len() {
            assert_eq!(split_feed(s.as_bytes(), &[cut]).as_ref(), Some(&whole));
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => proptest::collection::vec(any::<char>(), 0..3000).prop_map(String::from_iter),
    ]
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    ("(call_[a-zA-Z0-9]{4,24})?", "[a-z_]{0,12}", text()).prop_map(|(id, name, arguments)| {
        ToolCall {
            _index: None,
            id,
            kind: function_type(),
            function: FunctionCall { name, arguments },
            other: Map::new(),
        }
    })
}

fn message() -> impl Strategy<Value = Message> {
    (
        proptest::option::of(text()),
        proptest::option::weighted(0.2, text()),
        proptest::option::weighted(0.4, proptest::collection::vec(tool_call(), 1..4)),
    )
        .prop_map(|(content, refusal, tool_calls)| Message {
            role: Some("assistant".into()),
            content,
            refusal,
            tool_calls,
            other: Map::new(),
        })
}

/// A completion as the assembler writes it.
fn completion() -> impl Strategy<Value = Completion> {
    (
        "(chatcmpl-[a-zA-Z0-9]{4,29})?",
        any::<u64>(),
        "[a-z0-9.-]{0,20}",
        proptest::option::of("[a-z]{1,8}"),
        proptest::option::of("fp_[0-9a-f]{10}"),
        proptest::collection::btree_map(
            0u32..6,
            (
                message(),
                prop_oneof!["stop", "length", "tool_calls", "content_filter"],
            ),
            1..4,
        ),
        proptest::option::of((0u64..100_000, 0u64..100_000, any::<bool>())),
    )
        .prop_map(
            |(id, created, model, service_tier, system_fingerprint, choices, usage)| Completion {
                id: Some(id),
                object: "chat.completion".into(),
                created: Some(created),
                model: Some(model),
                service_tier,
                system_fingerprint,
                choices: choices
                    .into_iter()
                    .map(|(index, (message, finish_reason))| Choice {
                        index: Some(index),
                        message,
                        logprobs: None,
                        finish_reason: Some(finish_reason),
                    })
                    .collect(),
                usage: usage.map(|(p, c, details)| {
                    let mut u =
                        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
                    if details {
                        u["prompt_tokens_details"] =
                            json!({"cached_tokens": p / 2, "audio_tokens": 0});
                    }
                    RawValue::from_string(u.to_string()).unwrap()
                }),
            },
        )
}

proptest! {
    #[test]
    fn any_split_gives_the_same_completion(
        which in 0usize..4,
        cuts in proptest::collection::vec(0usize..6000, 0..40),
        crlf in any::<bool>(),
    ) {
        let s = [RECORDED.to_string(), two_choices(), tool_stream(), refusal_stream()][which].clone();
        let s = if crlf { s.replace('\n', "\r\n") } else { s };
        let whole = assemble(s.as_bytes(), MAX);
        prop_assert!(whole.is_some());
        prop_assert_eq!(split_feed(s.as_bytes(), &cuts), whole);
    }

    #[test]
    fn replay_round_trips(c in completion(), include_usage in any::<bool>(),
                          cuts in proptest::collection::vec(0usize..100_000, 0..8)) {
        let stored = serde_json::to_vec(&c).unwrap();
        let sse = to_sse(&stored, include_usage).unwrap();
        let back = split_feed(&sse, &cuts).unwrap();
        let expected = if include_usage || c.usage.is_none() {
            stored.clone()
        } else {
            let mut c: Completion = serde_json::from_slice(&stored).unwrap();
            c.usage = None;
            serde_json::to_vec(&c).unwrap()
        };
        prop_assert_eq!(String::from_utf8(back).unwrap(), String::from_utf8(expected).unwrap());
        let s = summary(&stored).unwrap();
        prop_assert!(s.complete);
        prop_assert_eq!(s.usage.is_some(), c.usage.is_some());
        prop_assert_eq!(s.tool_calls, c.choices.iter().any(|ch| ch.message.tool_calls.is_some()
            || ch.finish_reason.as_deref() == Some("tool_calls")));
    }

    #[test]
    fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
                    max in 0usize..4096) {
        let mut a = Assembler::new(max);
        for c in &chunks {
            a.feed(c);
        }
        let _ = a.finish();
        let joined = chunks.concat();
        let _ = to_sse(&joined, true);
        let _ = summary(&joined);
    }
}
