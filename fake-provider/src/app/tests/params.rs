//! `n`, `logprobs` / `top_logprobs` and `response_format`, as OpenAI answers them.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{assert_openai_error, hello, o200k_len, post, post_with, send, Reply};

async fn chat(body: &Value, headers: &[(&str, &str)]) -> Reply {
    send(post_with("/v1/chat/completions", body, headers)).await
}

fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The JSON chunks of an SSE reply (without `[DONE]`, which must end it).
fn sse_chunks(r: &Reply) -> Vec<Value> {
    let events = r.sse();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// Per choice index: the streamed content, the finish reason and the chunks' logprobs
/// entries, checking each chunk carries exactly one choice.
fn by_choice(chunks: &[Value]) -> Vec<(String, String, Vec<Value>)> {
    let mut out: Vec<(String, String, Vec<Value>)> = Vec::new();
    for c in chunks {
        let choices = c["choices"].as_array().unwrap();
        if choices.is_empty() {
            continue;
        }
        assert_eq!(choices.len(), 1, "{c}");
        let ch = &choices[0];
        let i = ch["index"].as_u64().unwrap() as usize;
        if out.len() <= i {
            out.resize(i + 1, Default::default());
        }
        let slot = &mut out[i];
        if let Some(t) = ch["delta"]["content"].as_str().or(ch["text"].as_str()) {
            slot.0.push_str(t);
        }
        if let Some(f) = ch["finish_reason"].as_str() {
            assert!(slot.1.is_empty(), "two finish reasons for {i}");
            slot.1 = f.to_owned();
        }
        if let Some(entries) = ch["logprobs"]["content"].as_array() {
            slot.2.extend(entries.iter().cloned());
        }
    }
    out
}

#[tokio::test]
async fn n_choices_each_with_its_index_and_usage_summed() {
    let one = chat(&hello("gpt-4o"), &[("x-fake-id", "chatcmpl-n")])
        .await
        .json();
    let body = with(hello("gpt-4o"), json!({"n": 3}));
    let r = chat(
        &body,
        &[
            ("x-fake-id", "chatcmpl-n"),
            ("x-fake-completion-tokens", "6"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    let mut total = 0;
    let mut texts = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "stop");
        assert!(c["logprobs"].is_null());
        let text = c["message"]["content"].as_str().unwrap();
        assert_eq!(o200k_len(text), 6, "{text}");
        total += o200k_len(text);
        texts.push(text.to_owned());
    }
    assert_eq!(texts[0], "The quick brown fox jumps over");
    assert!(texts[0] != texts[1] && texts[1] != texts[2], "{texts:?}");
    assert_eq!(v["usage"]["prompt_tokens"], 8, "the prompt is counted once");
    assert_eq!(v["usage"]["completion_tokens"], total);
    assert_eq!(v["usage"]["total_tokens"], 8 + total);
    // n = 1 is the answer without n.
    let r = chat(
        &with(hello("gpt-4o"), json!({"n": 1})),
        &[("x-fake-id", "chatcmpl-n")],
    )
    .await;
    assert_eq!(r.json(), one);

    // max_tokens caps every choice.
    let body = with(hello("gpt-4o"), json!({"n": 2, "max_tokens": 4}));
    let v = chat(&body, &[]).await.json();
    for c in v["choices"].as_array().unwrap() {
        assert_eq!(c["finish_reason"], "length");
        assert_eq!(o200k_len(c["message"]["content"].as_str().unwrap()), 4);
    }
    assert_eq!(v["usage"]["completion_tokens"], 8);

    // The largest n.
    let v = chat(&with(hello("gpt-4o"), json!({"n": 128})), &[])
        .await
        .json();
    assert_eq!(v["choices"].as_array().unwrap().len(), 128);
    assert_eq!(v["choices"][127]["index"], 127);
    assert_eq!(v["usage"]["completion_tokens"], 128 * 16);
}

#[tokio::test]
async fn n_choices_stream_interleaved_by_index() {
    let fixed = [
        ("x-fake-id", "chatcmpl-s"),
        ("x-fake-completion-tokens", "5"),
    ];
    let json_answer = chat(&with(hello("gpt-4o"), json!({"n": 2})), &fixed)
        .await
        .json();
    let body = with(
        hello("gpt-4o"),
        json!({"n": 2, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let r = chat(&body, &fixed).await;
    let chunks = sse_chunks(&r);
    // Two role chunks, 2 x 5 content chunks, two finish chunks, the usage chunk.
    assert_eq!(chunks.len(), 2 + 10 + 2 + 1);
    let indexes: Vec<u64> = chunks[..14]
        .iter()
        .map(|c| c["choices"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1].repeat(7), "interleaved");
    for c in &chunks[..2] {
        assert_eq!(
            c["choices"][0]["delta"],
            json!({"role": "assistant", "content": "", "refusal": null})
        );
    }
    let got = by_choice(&chunks);
    assert_eq!(got.len(), 2);
    for (i, (text, finish, _)) in got.iter().enumerate() {
        assert_eq!(
            text,
            json_answer["choices"][i]["message"]["content"]
                .as_str()
                .unwrap()
        );
        assert_eq!(finish, "stop");
    }
    assert_ne!(got[0].0, got[1].0);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage, &json_answer["usage"]);
    assert_eq!(usage["completion_tokens"], 10);

    // Without include_usage: no usage key anywhere, as with n = 1.
    let body = with(hello("gpt-4o"), json!({"n": 2, "stream": true}));
    let r = chat(&body, &fixed).await;
    assert!(sse_chunks(&r).iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn n_out_of_range_is_openais_400() {
    for (n, code) in [
        (json!(0), json!("integer_below_min_value")),
        (json!(-1), json!("integer_below_min_value")),
        (json!(129), json!("integer_above_max_value")),
        (json!(u64::MAX), json!("integer_above_max_value")),
        (json!("2"), json!("invalid_type")),
        (json!(1.5), json!("invalid_type")),
    ] {
        let r = chat(&with(hello("gpt-4o"), json!({"n": n})), &[]).await;
        assert_openai_error(&r, 400, "invalid_request_error", code);
        assert_eq!(r.json()["error"]["param"], "n", "{n}");
    }
    let r = chat(&with(hello("gpt-4o"), json!({"n": 129})), &[]).await;
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead."
    );
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "n": 0});
    let r = send(post("/v1/completions", &body)).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        json!("integer_below_min_value"),
    );
}

#[tokio::test]
async fn n_tool_calls_one_per_choice() {
    let body = json!({"model": "gpt-4o", "n": 2,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
    let h = [
        ("x-fake-tool-call", "get_weather"),
        ("x-fake-id", "chatcmpl-t"),
    ];
    let v = chat(&body, &h).await.json();
    let ids: Vec<&str> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["finish_reason"], "tool_calls");
            c["message"]["tool_calls"][0]["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let per_call = o200k_len("get_weather") + o200k_len(r#"{"city":"Paris"}"#);
    assert_eq!(v["usage"]["completion_tokens"], 2 * per_call);
    // The same with n = 1 keeps its call id.
    let mut one = body.clone();
    one.as_object_mut().unwrap().remove("n");
    let v1 = chat(&one, &h).await.json();
    assert_eq!(v1["choices"][0]["message"]["tool_calls"][0]["id"], ids[0]);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = chat(&streamed, &h).await;
    let mut calls = [String::new(), String::new()];
    for c in sse_chunks(&r) {
        let ch = &c["choices"][0];
        let i = ch["index"].as_u64().unwrap() as usize;
        for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
            if let Some(id) = tc["id"].as_str() {
                assert_eq!(id, ids[i]);
            }
            calls[i].push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(calls, [r#"{"city":"Paris"}"#, r#"{"city":"Paris"}"#]);
}

#[tokio::test]
async fn legacy_completions_n_choices() {
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "n": 2});
    let h = [("x-fake-completion-tokens", "3")];
    let v = send(post_with("/v1/completions", &body, &h)).await.json();
    let cl100k = |t: &str| {
        tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(t)
            .len() as u64
    };
    let texts: Vec<&str> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["index"], i);
            c["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(texts, ["The quick brown", "The brown fox"]);
    assert_eq!(
        v["usage"]["completion_tokens"],
        cl100k(texts[0]) + cl100k(texts[1])
    );

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = send(post_with("/v1/completions", &body, &h)).await;
    let chunks = sse_chunks(&r);
    let got = by_choice(&chunks);
    assert_eq!(got[0].0, "The quick brown");
    assert_eq!(got[1].0, "The brown fox");
    assert_eq!((got[0].1.as_str(), got[1].1.as_str()), ("stop", "stop"));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
}

/// Checks chat logprob entries against the content they describe, with `top` alternatives.
fn check_entries(entries: &[Value], content: &str, top: usize) {
    let mut joined = String::new();
    for e in entries {
        let obj = e.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, ["bytes", "logprob", "token", "top_logprobs"]);
        let token = e["token"].as_str().unwrap();
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, token.as_bytes());
        joined.push_str(token);
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0, "{e}");
        let tops = e["top_logprobs"].as_array().unwrap();
        assert_eq!(tops.len(), top, "{e}");
        if top > 0 {
            assert_eq!(tops[0]["token"], token);
            assert_eq!(tops[0]["logprob"], e["logprob"]);
        }
        let mut last = 0.0;
        for t in tops {
            let l = t["logprob"].as_f64().unwrap();
            assert!(l <= last, "sorted: {e}");
            last = l;
            assert_eq!(t.as_object().unwrap().len(), 3, "{t}");
        }
    }
    assert_eq!(joined, content);
    assert_eq!(
        entries.len() as u64,
        o200k_len(content),
        "one entry a token"
    );
}

#[tokio::test]
async fn chat_logprobs_in_openais_shape() {
    let fixed = [
        ("x-fake-id", "chatcmpl-lp"),
        ("x-fake-completion-tokens", "7"),
    ];
    for top in [None, Some(0), Some(3), Some(20)] {
        let mut body = with(hello("gpt-4o"), json!({"logprobs": true}));
        if let Some(t) = top {
            body["top_logprobs"] = json!(t);
        }
        let r = chat(&body, &fixed).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        let choice = &v["choices"][0];
        let content = choice["message"]["content"].as_str().unwrap();
        assert_eq!(choice["logprobs"]["refusal"], Value::Null);
        assert_eq!(choice["logprobs"].as_object().unwrap().len(), 2);
        let entries = choice["logprobs"]["content"].as_array().unwrap();
        check_entries(entries, content, top.unwrap_or(0));
        // Field order as OpenAI sends it.
        let text = String::from_utf8(r.body.clone()).unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(at("token") < at("logprob") && at("logprob") < at("bytes"));
        assert!(at("bytes") < at("top_logprobs"));

        // Streamed: the same entries, spread over the content chunks.
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let chunks = sse_chunks(&chat(&sbody, &fixed).await);
        let first = &chunks[0]["choices"][0];
        assert_eq!(first["logprobs"], json!({"content": [], "refusal": null}));
        for c in &chunks[1..chunks.len() - 1] {
            let ch = &c["choices"][0];
            let entries = ch["logprobs"]["content"].as_array().unwrap();
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0]["token"], ch["delta"]["content"]);
        }
        assert!(chunks.last().unwrap()["choices"][0]["logprobs"].is_null());
        let got = by_choice(&chunks);
        assert_eq!(&got[0].2, entries, "the stream's logprobs are the answer's");
    }
    // Without logprobs (or false): null, as before.
    for body in [
        hello("gpt-4o"),
        with(hello("gpt-4o"), json!({"logprobs": false})),
    ] {
        let v = chat(&body, &fixed).await.json();
        assert!(v["choices"][0]["logprobs"].is_null());
    }
    // Each choice its own logprobs.
    let body = with(
        hello("gpt-4o"),
        json!({"logprobs": true, "top_logprobs": 2, "n": 2}),
    );
    let v = chat(&body, &fixed).await.json();
    for c in v["choices"].as_array().unwrap() {
        let content = c["message"]["content"].as_str().unwrap();
        check_entries(c["logprobs"]["content"].as_array().unwrap(), content, 2);
    }
    // A tool call has no content, so no content logprobs.
    let body = json!({"model": "gpt-4o", "logprobs": true,
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
    let v = chat(&body, &[("x-fake-tool-call", "get_weather")])
        .await
        .json();
    assert_eq!(
        v["choices"][0]["logprobs"],
        json!({"content": null, "refusal": null})
    );
}

#[tokio::test]
async fn chat_logprobs_errors() {
    for (extra, param, code) in [
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
            json!("integer_above_max_value"),
        ),
        (
            json!({"logprobs": true, "top_logprobs": -1}),
            "top_logprobs",
            json!("integer_below_min_value"),
        ),
        (
            json!({"top_logprobs": 2}),
            "top_logprobs",
            json!("invalid_value"),
        ),
        (
            json!({"logprobs": false, "top_logprobs": 2}),
            "top_logprobs",
            json!("invalid_value"),
        ),
        (
            json!({"logprobs": "yes"}),
            "logprobs",
            json!("invalid_type"),
        ),
        (
            json!({"logprobs": true, "top_logprobs": "3"}),
            "top_logprobs",
            json!("invalid_type"),
        ),
    ] {
        let r = chat(&with(hello("gpt-4o"), extra.clone()), &[]).await;
        assert_openai_error(&r, 400, "invalid_request_error", code);
        assert_eq!(r.json()["error"]["param"], param, "{extra}");
    }
}

#[tokio::test]
async fn legacy_logprobs_in_the_legacy_shape() {
    let prompt = "Say this is a test";
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "logprobs": 2});
    let h = [("x-fake-completion-tokens", "4")];
    let r = send(post_with("/v1/completions", &body, &h)).await;
    let v = r.json();
    let choice = &v["choices"][0];
    let text = choice["text"].as_str().unwrap();
    let lp = &choice["logprobs"];
    let raw = String::from_utf8(r.body.clone()).unwrap();
    let at = |k: &str| raw.find(&format!("\"{k}\":")).unwrap();
    assert!(at("tokens") < at("token_logprobs") && at("token_logprobs") < at("top_logprobs"));
    assert!(at("top_logprobs") < at("text_offset"));
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), text);
    assert_eq!(tokens.len(), 4);
    // Offsets count characters from the start of the prompt.
    let mut offset = prompt.len();
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(lp["text_offset"][i], offset);
        offset += t.len();
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[*t], lp["token_logprobs"][i]);
    }

    // Streamed: each chunk's logprobs describe its text, positions continuing.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = send(post_with("/v1/completions", &sbody, &h)).await;
    let chunks = sse_chunks(&r);
    let (mut streamed_tokens, mut offsets, mut lps) = (Vec::new(), Vec::new(), Vec::new());
    for c in &chunks {
        let ch = &c["choices"][0];
        if ch["finish_reason"].is_string() {
            assert!(ch["logprobs"].is_null());
            continue;
        }
        assert_eq!(ch["logprobs"]["tokens"][0], ch["text"]);
        streamed_tokens.push(ch["logprobs"]["tokens"][0].clone());
        offsets.push(ch["logprobs"]["text_offset"][0].clone());
        lps.push(ch["logprobs"]["token_logprobs"][0].clone());
    }
    assert_eq!(Value::from(streamed_tokens), lp["tokens"]);
    assert_eq!(Value::from(offsets), lp["text_offset"]);
    assert_eq!(Value::from(lps), lp["token_logprobs"]);

    // logprobs: 0 names the sampled token only; above 5 is refused.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "logprobs": 0});
    let v = send(post("/v1/completions", &body)).await.json();
    for m in v["choices"][0]["logprobs"]["top_logprobs"]
        .as_array()
        .unwrap()
    {
        assert_eq!(m.as_object().unwrap().len(), 1);
    }
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "logprobs": 6});
    let r = send(post("/v1/completions", &body)).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        json!("integer_above_max_value"),
    );
    assert_eq!(r.json()["error"]["param"], "logprobs");
    // Without logprobs: null, as before.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": prompt});
    let v = send(post("/v1/completions", &body)).await.json();
    assert!(v["choices"][0]["logprobs"].is_null());
}

fn json_hello(model: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Hello"}]})
}

#[tokio::test]
async fn json_object_answers_an_object() {
    let body = with(
        json_hello("gpt-4o"),
        json!({"response_format": {"type": "json_object"}}),
    );
    let h = [
        ("x-fake-completion-tokens", "5"),
        ("x-fake-id", "chatcmpl-j"),
    ];
    let v = chat(&body, &h).await.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content).unwrap();
    assert_eq!(parsed, json!({"answer": "The quick brown fox jumps"}));
    assert_eq!(v["usage"]["completion_tokens"], o200k_len(content));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Streamed: the pieces make the same JSON text, usage the same.
    let sbody = with(
        body.clone(),
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let chunks = sse_chunks(&chat(&sbody, &h).await);
    let got = by_choice(&chunks);
    assert_eq!(got[0].0, content);
    assert!(chunks.len() > 5, "streamed in pieces");
    assert_eq!(chunks.last().unwrap()["usage"], v["usage"]);

    // OpenAI's rule: the messages must mention JSON.
    let bad = with(
        hello("gpt-4o"),
        json!({"response_format": {"type": "json_object"}}),
    );
    let r = chat(&bad, &[]).await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
    assert_eq!(r.json()["error"]["param"], "messages");

    // "text" is the default.
    let text = with(
        hello("gpt-4o"),
        json!({"response_format": {"type": "text"}}),
    );
    assert_eq!(
        chat(&text, &h).await.body,
        chat(&hello("gpt-4o"), &h).await.body,
        "byte for byte"
    );
}

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {
        "city": {"type": "string"}, "celsius": {"type": "number", "minimum": -90, "maximum": 60},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "days": {"type": "array", "items": {"$ref": "#/$defs/day"}, "minItems": 2},
        "note": {"type": ["string", "null"]}},
        "required": ["city", "celsius", "unit", "days", "note"], "additionalProperties": false,
        "$defs": {"day": {"type": "object", "properties": {
            "date": {"type": "string", "format": "date"}, "rain": {"type": "boolean"}},
            "required": ["date", "rain"], "additionalProperties": false}}})
}

#[tokio::test]
async fn json_schema_answers_a_valid_instance() {
    let schema = weather_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let body = with(
        hello("gpt-4o"),
        json!({"n": 2, "response_format": {"type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": true}}}),
    );
    let v = chat(&body, &[("x-fake-id", "chatcmpl-js")]).await.json();
    let mut total = 0;
    let mut instances = Vec::new();
    for c in v["choices"].as_array().unwrap() {
        let content = c["message"]["content"].as_str().unwrap();
        let instance: Value = serde_json::from_str(content).unwrap();
        assert!(validator.is_valid(&instance), "{instance}");
        total += o200k_len(content);
        instances.push(instance);
    }
    assert_ne!(instances[0], instances[1], "each choice its own");
    assert_eq!(instances[0]["days"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["completion_tokens"], total);

    // Streamed with logprobs: the same text, one entry a token.
    let sbody = with(body.clone(), json!({"stream": true, "logprobs": true}));
    let chunks = sse_chunks(&chat(&sbody, &[("x-fake-id", "chatcmpl-js")]).await);
    for (i, (text, finish, entries)) in by_choice(&chunks).iter().enumerate() {
        assert_eq!(
            text,
            v["choices"][i]["message"]["content"].as_str().unwrap()
        );
        assert_eq!(finish, "stop");
        check_entries(entries, text, 0);
    }

    // max_tokens cuts the JSON short, as OpenAI's would.
    let cut = with(body.clone(), json!({"n": 1, "max_tokens": 5}));
    let v = chat(&cut, &[]).await.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(serde_json::from_str::<Value>(content).is_err(), "{content}");
    assert_eq!(v["usage"]["completion_tokens"], 5);

    // No schema: an empty object.
    let none = with(
        hello("gpt-4o"),
        json!({"response_format": {"type": "json_schema", "json_schema": {"name": "any"}}}),
    );
    let v = chat(&none, &[]).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "{}");
}

#[tokio::test]
async fn invalid_response_formats_are_openais_400() {
    let rf = |v: Value| with(json_hello("gpt-4o"), json!({"response_format": v}));
    let schema = |js: Value| rf(json!({"type": "json_schema", "json_schema": js}));
    let cases = [
        (rf(json!("json")), "response_format", json!("invalid_type")),
        (
            rf(json!({})),
            "response_format.type",
            json!("missing_required_parameter"),
        ),
        (
            rf(json!({"type": 1})),
            "response_format.type",
            json!("invalid_type"),
        ),
        (
            rf(json!({"type": "xml"})),
            "response_format.type",
            json!("invalid_value"),
        ),
        (
            rf(json!({"type": "json_schema"})),
            "response_format.json_schema",
            json!("missing_required_parameter"),
        ),
        (
            schema(json!("s")),
            "response_format.json_schema",
            json!("invalid_type"),
        ),
        (
            schema(json!({"schema": {}})),
            "response_format.json_schema.name",
            json!("missing_required_parameter"),
        ),
        (
            schema(json!({"name": "has space"})),
            "response_format.json_schema.name",
            json!("invalid_value"),
        ),
        (
            schema(json!({"name": "x".repeat(65)})),
            "response_format.json_schema.name",
            json!("invalid_value"),
        ),
        (
            schema(json!({"name": "w", "schema": []})),
            "response_format.json_schema.schema",
            json!("invalid_type"),
        ),
        (
            schema(json!({"name": "w", "strict": "yes"})),
            "response_format.json_schema.strict",
            json!("invalid_type"),
        ),
        (
            schema(json!({"name": "w", "strict": true, "schema": {"type": "string"}})),
            "response_format",
            json!("invalid_json_schema"),
        ),
        (
            schema(
                json!({"name": "w", "strict": true, "schema": {"type": "object",
            "properties": {"a": {"type": "string"}}, "required": ["a"]}}),
            ),
            "response_format",
            json!("invalid_json_schema"),
        ),
        (
            schema(json!({"name": "w", "schema": {"type": "string", "pattern": "^a$"}})),
            "response_format.json_schema.schema",
            Value::Null,
        ),
    ];
    for (body, param, code) in cases {
        let r = chat(&body, &[]).await;
        assert_openai_error(&r, 400, "invalid_request_error", code);
        assert_eq!(
            r.json()["error"]["param"],
            param,
            "{}",
            body["response_format"]
        );
    }
    let r = chat(&rf(json!({"type": "xml"})), &[]).await;
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid value: 'xml'. Supported values are: 'text', 'json_object', and 'json_schema'."
    );
    let r = chat(
        &schema(
            json!({"name": "w", "strict": true, "schema": {"type": "object",
            "properties": {"a": {"type": "string"}}, "required": ["a"]}}),
        ),
        &[],
    )
    .await;
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid schema for response_format 'w': In context=(), 'additionalProperties' is \
         required to be supplied and to be false."
    );
    // Non-strict schemas need not follow the strict rules.
    let r = chat(
        &schema(json!({"name": "w", "schema": {"type": "string", "minLength": 3}})),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(&content).unwrap(),
        "The quick brown"
    );
}
