//! `n`, `logprobs` / `top_logprobs` and `response_format` through the real wasm in real Envoy:
//! the gateway passes them to the provider unchanged, the client gets the provider's answer
//! (every choice, with its index, in JSON and in streams), and the access log and the metrics
//! count the completion tokens of every choice, whether the provider reports usage, the
//! gateway asks for it and strips it, or nobody does and the gateway counts the deltas.

mod support;

use serde_json::{json, Value};
use support::*;

const MODEL: &str = "gpt-4o-mini";

fn demo() -> (Fake, Gateway) {
    let fake = Fake::start(None);
    let gw = Gateway::start(&fake, Options::default());
    (fake, gw)
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "What is the weather in Paris?"}]});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

fn weather_format() -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "weather", "strict": true, "schema": {
        "type": "object", "additionalProperties": false,
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"},
                       "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city", "celsius", "unit"]}}})
}

/// The requests of the tests: each parameter alone, and all of them together.
fn bodies() -> Vec<(&'static str, Value)> {
    vec![
        ("n", ask(json!({"n": 3}))),
        (
            "logprobs",
            ask(json!({"logprobs": true, "top_logprobs": 5})),
        ),
        (
            "json_object",
            ask(json!({"response_format": {"type": "json_object"}})),
        ),
        (
            "json_schema",
            ask(json!({"response_format": weather_format()})),
        ),
        (
            "all",
            ask(json!({"n": 2, "logprobs": true, "top_logprobs": 2,
                       "response_format": weather_format()})),
        ),
    ]
}

/// The same request sent to the fake provider directly.
fn direct(fake: &Fake, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let r = post(
        &format!("http://127.0.0.1:{}{path}", fake.port),
        &h,
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks an answer honours what its request asked for.
fn check_answer(name: &str, body: &Value, answer: &Value) {
    let n = body["n"].as_u64().unwrap_or(1) as usize;
    let choices = answer["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), n, "{name}: {answer}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{name}");
        let content = c["message"]["content"].as_str().expect("content");
        match body["logprobs"].as_bool() {
            Some(true) => {
                let entries = c["logprobs"]["content"].as_array().expect("logprobs");
                let tokens: String = entries
                    .iter()
                    .map(|e| e["token"].as_str().expect("token"))
                    .collect();
                assert_eq!(tokens, content, "{name}");
                let top = body["top_logprobs"].as_u64().unwrap_or(0) as usize;
                assert!(entries
                    .iter()
                    .all(|e| e["top_logprobs"].as_array().map(Vec::len) == Some(top)));
            }
            _ => assert!(c["logprobs"].is_null(), "{name}"),
        }
        match body["response_format"]["type"].as_str() {
            Some("json_object") => {
                let v: Value = serde_json::from_str(content).expect("JSON content");
                assert!(v.is_object(), "{name}: {content}");
            }
            Some("json_schema") => {
                let v: Value = serde_json::from_str(content).expect("JSON content");
                assert!(
                    v["city"].is_string() && v["celsius"].is_i64(),
                    "{name}: {v}"
                );
                assert!(v["unit"] == "C" || v["unit"] == "F", "{name}: {v}");
                assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{name}: {v}");
            }
            _ => assert!(serde_json::from_str::<Value>(content).is_err(), "{name}"),
        }
    }
    if n > 1 {
        assert_ne!(choices[0]["message"], choices[1]["message"], "{name}");
    }
}

/// The tokens of every choice's content, counted here with the model's tokenizer.
fn content_tokens(answer: &Value) -> u64 {
    let bpe = tiktoken_rs::o200k_base_singleton();
    answer["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .map(|c| {
            let content = c["message"]["content"].as_str().expect("content");
            bpe.encode_ordinary(content).len() as u64
        })
        .sum()
}

/// The `llm_gateway_tokens_total` of one token type for the test model.
fn tokens_metric(gw: &Gateway, token_type: &str) -> f64 {
    prom_sum(
        &gw.prometheus(),
        "llm_gateway_tokens_total",
        &[
            ("gen_ai_request_model", MODEL),
            ("gen_ai_token_type", token_type),
        ],
    )
}

#[test]
fn parameters_pass_through_unchanged_and_every_choice_is_counted() {
    let (fake, gw) = demo();
    let mut logged = 0;
    let mut output = 0;
    for (name, body) in bodies() {
        let id = format!("chatcmpl-{name}");
        let fixed = [
            ("x-fake-id", id.as_str()),
            ("x-fake-completion-tokens", "6"),
        ];
        let r = chat(&gw, &body, &fixed);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        logged += 1;
        // The provider got the client's body byte for byte.
        assert_eq!(
            r.header("x-fake-received-body-sha256"),
            Some(sha256_hex(body.to_string().as_bytes()).as_str()),
            "{name}"
        );
        // The client got the provider's answer byte for byte.
        let d = direct(&fake, "/v1/chat/completions", &body, &fixed);
        assert_eq!(r.text(), d.text(), "{name}");
        let answer = r.json();
        check_answer(name, &body, &answer);

        // Accounting: the provider's usage, which covers every choice.
        let usage = &answer["usage"];
        let completion = usage["completion_tokens"].as_u64().unwrap();
        assert_eq!(completion, content_tokens(&answer), "{name}: {usage}");
        if name == "n" {
            assert_eq!(completion, 3 * 6);
        }
        let line = gw.access_log(logged).pop().unwrap();
        assert_eq!(
            line["completion_tokens"],
            completion.to_string(),
            "{name}: {line}"
        );
        assert_eq!(
            line["prompt_tokens"],
            usage["prompt_tokens"].to_string(),
            "{name}"
        );
        assert_eq!(
            line["total_tokens"],
            usage["total_tokens"].to_string(),
            "{name}"
        );
        assert_eq!(line["usage_estimated"], "false", "{name}");
        assert_eq!(line["outcome"], "ok", "{name}");
        output += completion;
    }
    assert_eq!(tokens_metric(&gw, "output"), output as f64);

    // A provider that reports no usage: the gateway counts every choice's text itself.
    let body = ask(json!({"n": 3}));
    let r = chat(
        &gw,
        &body,
        &[("x-fake-no-usage", "1"), ("x-fake-completion-tokens", "7")],
    );
    assert_eq!(r.status, 200);
    assert!(r.json().get("usage").is_none());
    logged += 1;
    let line = gw.access_log(logged).pop().unwrap();
    assert_eq!(line["usage_estimated"], "true", "{line}");
    assert_eq!(line["completion_tokens"], "21", "3 choices x 7: {line}");
    assert_eq!(tokens_metric(&gw, "output"), (output + 21) as f64);
}

/// The data of every event of an SSE body, `[DONE]` included.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// Per choice index, the streamed content and the tokens of its logprobs; also whether a
/// usage chunk came.
fn per_choice(text: &str) -> (Vec<(String, String)>, bool) {
    let events = events(text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut usage = false;
    for e in &events[..events.len() - 1] {
        let c: Value = serde_json::from_str(e).expect("chunk");
        usage |= c["usage"].is_object();
        for ch in c["choices"].as_array().expect("choices") {
            let i = ch["index"].as_u64().expect("every choice has its index") as usize;
            if out.len() <= i {
                out.resize(i + 1, Default::default());
            }
            let piece = ch["delta"]["content"].as_str().or(ch["text"].as_str());
            out[i].0.push_str(piece.unwrap_or(""));
            for entry in ch["logprobs"]["content"].as_array().into_iter().flatten() {
                out[i].1.push_str(entry["token"].as_str().expect("token"));
            }
        }
    }
    (out, usage)
}

#[test]
fn streamed_choices_keep_their_index_and_every_choice_is_counted() {
    let (fake, gw) = demo();
    let mut logged = 0;
    let mut output = 0;
    let cases = [
        ("n", ask(json!({"n": 2}))),
        (
            "all",
            ask(json!({"n": 2, "logprobs": true, "top_logprobs": 3,
                       "response_format": weather_format()})),
        ),
    ];
    for (name, body) in cases {
        let id = format!("chatcmpl-stream-{name}");
        let fixed = [
            ("x-fake-id", id.as_str()),
            ("x-fake-completion-tokens", "9"),
        ];
        // What each choice says, from the provider's JSON answer.
        let answer = direct(&fake, "/v1/chat/completions", &body, &fixed).json();
        let contents: Vec<String> = answer["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["message"]["content"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(contents.len(), 2);
        assert_ne!(contents[0], contents[1]);
        let completion = answer["usage"]["completion_tokens"].as_u64().unwrap();
        assert_eq!(completion, content_tokens(&answer), "{name}");
        if name == "n" {
            assert_eq!(completion, 2 * 9);
        }
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let mut with_usage = streamed.clone();
        with_usage["stream_options"] = json!({"include_usage": true});

        // 1. The client asks for usage: every byte of the provider's stream passes.
        let r = chat(&gw, &with_usage, &fixed);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("x-fake-received-body-sha256"),
            Some(sha256_hex(with_usage.to_string().as_bytes()).as_str()),
            "{name}: the body reached the provider unchanged"
        );
        let d = direct(&fake, "/v1/chat/completions", &with_usage, &fixed);
        assert_eq!(r.text(), d.text(), "{name}");
        let (choices, usage) = per_choice(&r.text());
        assert!(usage);
        for (i, (content, lp_tokens)) in choices.iter().enumerate() {
            assert_eq!(content, &contents[i], "{name}: choice {i}");
            if body["logprobs"] == true {
                assert_eq!(lp_tokens, content, "{name}: choice {i}'s logprobs");
            }
        }
        logged += 1;
        output += completion;
        let line = gw.access_log(logged).pop().unwrap();
        assert_eq!(
            line["completion_tokens"],
            completion.to_string(),
            "{name}: {line}"
        );
        assert_eq!(line["usage_estimated"], "false");

        // 2. The client does not: the gateway asks for usage, reads it, strips it, and the
        // client gets the rest of the provider's bytes, every choice under its index.
        let r = chat(&gw, &streamed, &fixed);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-fake-received-include-usage"), Some("true"));
        let text = r.text();
        let (choices, usage) = per_choice(&text);
        assert!(!usage, "the usage chunk was stripped: {text}");
        assert_eq!(choices.len(), 2);
        for (i, (content, _)) in choices.iter().enumerate() {
            assert_eq!(content, &contents[i], "{name}: choice {i}");
        }
        let direct_text = d.text();
        let usage_event = direct_text
            .split_inclusive("\n\n")
            .find(|e| e.contains("\"choices\":[]") && e.contains("\"completion_tokens\""))
            .expect("the provider's usage chunk");
        assert_eq!(text, direct_text.replacen(usage_event, "", 1), "{name}");
        logged += 1;
        output += completion;
        let line = gw.access_log(logged).pop().unwrap();
        assert_eq!(
            line["completion_tokens"],
            completion.to_string(),
            "{name}: {line}"
        );
        assert_eq!(line["stream"], "true");
        assert_eq!(line["usage_estimated"], "false");

        // 3. A provider that sends no usage at all: the gateway counts every choice's deltas.
        let mut no_usage = fixed.to_vec();
        no_usage.push(("x-fake-no-usage", "1"));
        let r = chat(&gw, &streamed, &no_usage);
        assert_eq!(r.status, 200);
        let (choices, _) = per_choice(&r.text());
        assert_eq!(choices.len(), 2);
        logged += 1;
        output += completion;
        let line = gw.access_log(logged).pop().unwrap();
        assert_eq!(line["usage_estimated"], "true", "{line}");
        assert_eq!(
            line["completion_tokens"],
            completion.to_string(),
            "{name}: {line}"
        );
    }
    assert_eq!(tokens_metric(&gw, "output"), output as f64);

    // Legacy completions, n = 2, streamed without usage asked: both choices counted.
    let body = json!({"model": MODEL, "prompt": "Say this is a test", "n": 2, "stream": true});
    let r = post(
        &gw.url("/v1/completions"),
        &[
            ("authorization", &format!("Bearer {DEMO_KEY}")),
            ("content-type", "application/json"),
            ("x-fake-completion-tokens", "4"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    let (choices, usage) = per_choice(&r.text());
    assert!(!usage);
    let texts: Vec<&str> = choices.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(texts, ["The quick brown fox", "The brown fox jumps"]);
    logged += 1;
    let line = gw.access_log(logged).pop().unwrap();
    assert_eq!(line["endpoint"], "completions");
    assert_eq!(line["completion_tokens"], "8", "{line}");
    assert_eq!(line["usage_estimated"], "false");
}
