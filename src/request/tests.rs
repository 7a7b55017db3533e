//! Request parsing, counting and rewriting against OpenAI's behaviour.

use super::*;
use crate::translate::{anthropic_to_openai, openai_to_anthropic, Target};

fn target(model: &str, default_max_tokens: u64) -> Target<'_> {
    Target {
        model,
        default_max_tokens,
    }
}

use crate::tokens::{Count, Encoding};
use serde_json::json;

fn chat(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn endpoints() {
    assert_eq!(
        Endpoint::from_request("POST", "/v1/chat/completions"),
        Some(Endpoint::ChatCompletions)
    );
    assert_eq!(
        Endpoint::from_request("POST", "/openai/v1/chat/completions?x=1"),
        Some(Endpoint::ChatCompletions)
    );
    assert_eq!(
        Endpoint::from_request("POST", "/v1/completions"),
        Some(Endpoint::Completions)
    );
    assert_eq!(
        Endpoint::from_request("POST", "/v1/embeddings/"),
        Some(Endpoint::Embeddings)
    );
    assert_eq!(Endpoint::from_request("GET", "/v1/chat/completions"), None);
    assert_eq!(Endpoint::from_request("POST", "/v1/models"), None);
    assert_eq!(
        Endpoint::from_request("POST", "/v1/chat/completions/x"),
        None
    );
}

#[test]
fn cookbook_counts() {
    // The OpenAI cookbook's example conversation: 129 prompt tokens for gpt-4o-class models
    // as reported by the API (o200k_base), 129 for gpt-4 (cl100k_base).
    let body = chat(json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
    ]}));
    let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
    assert_eq!(
        r.count_prompt(Encoding::O200kBase),
        Count {
            tokens: 124,
            estimated: false
        }
    );
    assert_eq!(
        r.count_prompt(Encoding::Cl100kBase),
        Count {
            tokens: 129,
            estimated: false
        }
    );
}

#[test]
fn hello() {
    let body = chat(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}));
    let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
    assert_eq!(r.count_prompt(Encoding::O200kBase).tokens, 8);
}

#[test]
fn parts_images_tools_are_estimated() {
    let body = chat(json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                      {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}
    ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}));
    let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
    let c = r.count_prompt(Encoding::O200kBase);
    assert!(c.estimated);
    assert!(c.tokens > 85 + 8);
}

#[test]
fn counting_is_exact_within_the_budget_and_bounded_above_past_it() {
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(2000);
    let body = chat(json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": long}
    ]}));
    let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
    let exact = r.count_prompt(Encoding::O200kBase);
    assert!(!exact.estimated);
    // Room for everything: the same exact count.
    assert_eq!(
        r.count_prompt_within(Encoding::O200kBase, long.len() + 64),
        exact
    );
    // Room for the system message only: the long text counts as its bytes, flagged.
    let bounded = r.count_prompt_within(Encoding::O200kBase, 64);
    assert!(bounded.estimated);
    let system = Encoding::O200kBase.count("Be brief.");
    assert_eq!(
        bounded.tokens,
        3 + 1 + system + 3 + 1 + long.len() as u64 + 3,
        "system exact, the user's text as its bytes"
    );
    assert!(bounded.tokens >= exact.tokens);
    // Nothing counted exactly: still an upper bound.
    assert!(r.count_prompt_within(Encoding::O200kBase, 0).tokens >= exact.tokens);
}

#[test]
fn escaped_strings_count_like_plain() {
    let a = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "line\n\"quoted\" é"}]}),
    );
    let r = Request::parse(Endpoint::ChatCompletions, &a).unwrap();
    let expected = 3 + 1 + Encoding::O200kBase.count("line\n\"quoted\" é") + 3;
    assert_eq!(r.count_prompt(Encoding::O200kBase).tokens, expected);
}

#[test]
fn completions_and_embeddings() {
    let b = chat(
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["Hello, world!", "Hello, world!"]}),
    );
    let r = Request::parse(Endpoint::Completions, &b).unwrap();
    assert_eq!(r.count_prompt(Encoding::Cl100kBase).tokens, 8);
    let b = chat(json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]}));
    let r = Request::parse(Endpoint::Embeddings, &b).unwrap();
    assert_eq!(r.count_prompt(Encoding::Cl100kBase).tokens, 4);
    let b = chat(json!({"model": "text-embedding-3-small", "input": "Hello, world!"}));
    let r = Request::parse(Endpoint::Embeddings, &b).unwrap();
    assert_eq!(r.count_prompt(Encoding::Cl100kBase).tokens, 4);
}

fn code_of(endpoint: Endpoint, body: &[u8]) -> (u32, &'static str, Option<&'static str>) {
    match Request::parse(endpoint, body) {
        Ok(_) => panic!("accepted {}", String::from_utf8_lossy(body)),
        Err(e) => (e.status, e.code, e.param),
    }
}

#[test]
fn bad_requests() {
    let ep = Endpoint::ChatCompletions;
    assert_eq!(code_of(ep, b"{"), (400, "invalid_json", None));
    assert_eq!(code_of(ep, b""), (400, "invalid_json", None));
    assert_eq!(code_of(ep, b"[1,2]"), (400, "invalid_json", None));
    assert_eq!(
        code_of(ep, b"{\"model\":\"x\"} trailing"),
        (400, "invalid_json", None)
    );
    assert_eq!(
        code_of(ep, br#"{"messages":[]}"#),
        (400, "missing_required_parameter", Some("model"))
    );
    assert_eq!(
        code_of(ep, br#"{"model":null,"messages":[]}"#).2,
        Some("model")
    );
    assert_eq!(
        code_of(ep, br#"{"model":5,"messages":[]}"#),
        (400, "invalid_value", Some("model"))
    );
    assert_eq!(
        code_of(ep, br#"{"model":"","messages":[]}"#).2,
        Some("model")
    );
    assert_eq!(
        code_of(ep, br#"{"model":"m"}"#),
        (400, "missing_required_parameter", Some("messages"))
    );
    assert_eq!(
        code_of(ep, br#"{"model":"m","messages":[]}"#),
        (400, "invalid_value", Some("messages"))
    );
    assert_eq!(
        code_of(ep, br#"{"model":"m","messages":"hi"}"#).2,
        Some("messages")
    );
    assert_eq!(
        code_of(ep, br#"{"model":"m","messages":[{"content":"x"}]}"#).2,
        Some("messages")
    );
    assert_eq!(
        code_of(
            ep,
            br#"{"model":"m","messages":[{"role":"user","content":5}]}"#
        )
        .2,
        Some("messages")
    );
    assert_eq!(
        code_of(
            ep,
            br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#
        )
        .2,
        Some("stream")
    );
    assert_eq!(
        code_of(
            ep,
            br#"{"model":"m","messages":[{"role":"user"}],"stream_options":5}"#
        )
        .2,
        Some("stream_options")
    );
    assert_eq!(
        code_of(Endpoint::Embeddings, br#"{"model":"m","input":{"a":1}}"#).2,
        Some("input")
    );
    assert_eq!(
        code_of(
            Endpoint::Embeddings,
            br#"{"model":"m","input":"x","stream":true}"#
        )
        .2,
        Some("stream")
    );
}

#[test]
fn rewrite_model_and_usage() {
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5}"#;
    let r = Request::parse(Endpoint::ChatCompletions, body).unwrap();
    assert!(r.stream && !r.include_usage);
    assert!(r.rewrite(None, false).is_none());
    assert!(r.rewrite(Some("gpt-4o"), false).is_none());
    let out = r.rewrite(Some("gpt-4o-2024-08-06"), true).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    assert_eq!(v["temperature"], 0.5);
    assert_eq!(v["messages"][0]["content"], "hi");
}

#[test]
fn rewrite_keeps_other_stream_options_and_dedupes() {
    let body = br#"{"model":"a","model":"b","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
    let r = Request::parse(Endpoint::ChatCompletions, body).unwrap();
    assert_eq!(r.model, "b");
    let out = r.rewrite(Some("c"), true).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("\"model\"").count(), 1);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model"], "c");
    assert_eq!(v["stream_options"], json!({"include_usage": true, "x": 1}));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_any_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        for ep in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings] {
            if let Ok(r) = Request::parse(ep, &body) {
                let _ = r.count_prompt(Encoding::O200kBase);
                let _ = r.rewrite(Some("x"), true);
            }
        }
    }

    #[test]
    fn never_panics_on_json_shapes(s in r#"\{("(model|messages|stream|prompt|input|stream_options|role|content)":(null|true|1|"x"|\[\]|\{\}|\[\{"role":"u","content":\[\{"type":"text"\}\]\}\]),?){0,6}\}"#) {
        for ep in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings] {
            if let Ok(r) = Request::parse(ep, s.as_bytes()) {
                let _ = r.count_prompt(Encoding::O200kBase);
                if let Some(out) = r.rewrite(Some("y"), true) {
                    proptest::prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
                }
            }
        }
    }
}

#[test]
fn max_output_tokens() {
    let p = |ep, b: &str| {
        Request::parse(ep, b.as_bytes())
            .unwrap()
            .max_output_tokens()
    };
    let chat = Endpoint::ChatCompletions;
    let m = r#""model":"m","messages":[{"role":"user","content":"x"}]"#;
    assert_eq!(p(chat, &format!("{{{m}}}")), None);
    assert_eq!(p(chat, &format!(r#"{{{m},"max_tokens":100}}"#)), Some(100));
    assert_eq!(
        p(
            chat,
            &format!(r#"{{{m},"max_tokens":100,"max_completion_tokens":50,"n":3}}"#)
        ),
        Some(150)
    );
    assert_eq!(p(chat, &format!(r#"{{{m},"max_tokens":null}}"#)), None);
    assert_eq!(
        p(Endpoint::Completions, r#"{"model":"m","prompt":"x"}"#),
        Some(16)
    );
    assert_eq!(
        p(Endpoint::Embeddings, r#"{"model":"m","input":"x"}"#),
        Some(0)
    );
}

/// Every path that reads a request body, on one body: whether each accepted it.
fn paths(body: &[u8]) -> Vec<(&'static str, bool)> {
    let parsed = Request::parse(Endpoint::ChatCompletions, body);
    if let Err(e) = &parsed {
        assert_eq!(e.code, "invalid_json", "{e:?}");
    }
    let rewritten = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.rewrite(Some("other"), true))
        .is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok());
    vec![
        ("parse", parsed.is_ok()),
        ("rewrite", rewritten),
        (
            "openai_to_anthropic::translate_request",
            openai_to_anthropic::translate_request(body, &target("claude", 16)).is_ok(),
        ),
        (
            "failover with_model",
            crate::wire::with_model(body, "other").is_ok(),
        ),
        (
            "cache key",
            crate::cache::keys(body, "p", "m", None, None).is_some(),
        ),
    ]
}

/// The same for a body an Anthropic client sent.
fn anthropic_paths(body: &[u8]) -> Vec<(&'static str, bool)> {
    let model = anthropic_to_openai::model_of(body);
    if let Err(e) = &model {
        assert_eq!(e.code, "invalid_json", "{e:?}");
    }
    let translated = anthropic_to_openai::translate_request(body, &target("gpt", 16));
    if let Err(e) = &translated {
        assert_eq!(e.code, "invalid_json", "{e:?}");
    }
    let reparsed = translated
        .as_ref()
        .is_ok_and(|t| Request::parse(Endpoint::ChatCompletions, &t.body).is_ok());
    vec![
        ("model_of", model.is_ok()),
        ("anthropic_to_openai::translate_request", translated.is_ok()),
        ("parse of the translation", reparsed),
        (
            "anthropic to anthropic with_model",
            crate::wire::with_model(body, "claude").is_ok(),
        ),
    ]
}

fn agree(body: &str, expect: bool) {
    let value_ok = serde_json::from_str::<serde_json::Value>(body).is_ok();
    assert_eq!(value_ok, expect, "{body}");
    for (path, ok) in paths(body.as_bytes()) {
        assert_eq!(ok, expect, "{path} on {body}");
    }
}

fn agree_anthropic(body: &str, expect: bool) {
    let value_ok = serde_json::from_str::<serde_json::Value>(body).is_ok();
    assert_eq!(value_ok, expect, "{body}");
    for (path, ok) in anthropic_paths(body.as_bytes()) {
        assert_eq!(ok, expect, "{path} on {body}");
    }
}

#[test]
fn one_json_rule_on_every_path() {
    let chat = |x: &str| {
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi","y":{x}}}],"x":{x}}}"#)
    };
    let claude = |x: &str| {
        format!(
            r#"{{"model":"c","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"x":{x}}}"#
        )
    };
    for e in crate::wire::tests::EDGES {
        let ok = serde_json::from_str::<serde_json::Value>(e).is_ok();
        agree(&chat(e), ok);
        agree_anthropic(&claude(e), ok);
    }
    for depth in [100, 126, 127, 1000] {
        let x = crate::wire::tests::nested(depth, "1");
        let ok = |b: &str| serde_json::from_str::<serde_json::Value>(b).is_ok();
        agree(&chat(&x), ok(&chat(&x)));
        agree_anthropic(&claude(&x), ok(&claude(&x)));
    }
    // The issue's body: refused on every route, with the same error.
    let body = chat("1e999");
    let e = Request::parse(Endpoint::ChatCompletions, body.as_bytes()).err();
    let e = e.unwrap();
    assert_eq!((e.status, e.code), (400, "invalid_json"));
    assert!(e.message.contains("number out of range"), "{}", e.message);
    assert_eq!(
        anthropic_to_openai::model_of(claude("1e999").as_bytes())
            .unwrap_err()
            .code,
        "invalid_json"
    );
}

proptest::proptest! {
    #[test]
    fn every_path_accepts_the_same_bodies(x in crate::wire::tests::jsonish()) {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"x":{x}}}"#);
        let expect = serde_json::from_str::<serde_json::Value>(&body).is_ok();
        for (path, ok) in paths(body.as_bytes()) {
            proptest::prop_assert_eq!(ok, expect, "{} on {}", path, body);
        }
        let body = format!(r#"{{"model":"c","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"x":{x}}}"#);
        for (path, ok) in anthropic_paths(body.as_bytes()) {
            proptest::prop_assert_eq!(ok, expect, "{} on {}", path, body);
        }
    }
}
