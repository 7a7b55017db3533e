//! In-process tests driving the real router with `tower::ServiceExt::oneshot`.

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, Config};

fn app() -> Router {
    router(Config::default())
}

fn post(path: &str, body: &Value) -> Request<Body> {
    post_with(path, body, &[])
}

fn post_with(path: &str, body: &Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
    }
    /// The `data:` payloads of an SSE body, checking the framing.
    fn sse(&self) -> Vec<String> {
        sse_events(std::str::from_utf8(&self.body).unwrap())
    }
}

fn sse_events(text: &str) -> Vec<String> {
    assert!(text.ends_with("\n\n"), "events end with a blank line");
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|ev| {
            ev.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {ev:?}"))
                .to_owned()
        })
        .collect()
}

async fn send_to(app: Router, req: Request<Body>) -> Reply {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn send(req: Request<Body>) -> Reply {
    send_to(app(), req).await
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
}

/// Token count computed here, independently of the server's code.
fn o200k_len(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

fn assert_openai_error(reply: &Reply, status: u16, kind: &str, code: Value) {
    assert_eq!(reply.status.as_u16(), status);
    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.json();
    let err = body["error"].as_object().expect("error object");
    let mut keys: Vec<&str> = err.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "message", "param", "type"]);
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(err["type"], kind);
    assert_eq!(err["code"], code);
}

/// The sha256 the fake echoes for a body.
fn sha256_hex(raw: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(raw.as_bytes()))
}

/// The fingerprint the fake echoes for a credential header's value, computed here.
fn fp(value: &str) -> String {
    format!("sha256:{}", &sha256_hex(value)[..16])
}

/// The request headers the fake echoed back (base64 JSON).
fn echoed_headers(r: &Reply) -> Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r.header("x-fake-received-headers"))
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn chat_non_stream_has_openai_shape_and_tokenizer_usage() {
    let r = send(post("/v1/chat/completions", &hello("gpt-4o"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-fake-prompt-tokens"), "8");
    let v = r.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(o200k_len(content), 16, "default completion length");
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-") && id.len() > 20, "{id}");
    let created = v["created"].as_u64().unwrap();
    assert!(created > 1_700_000_000);
    assert_eq!(
        v,
        json!({
            "id": id, "object": "chat.completion", "created": created, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_fake"
        })
    );
    // Field order as OpenAI sends it.
    let text = String::from_utf8(r.body.clone()).unwrap();
    let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
    assert!(pos("id") < pos("object") && pos("object") < pos("created"));
    assert!(pos("choices") < pos("usage") && pos("usage") < pos("service_tier"));
}

#[tokio::test]
async fn prompt_tokens_follow_the_cookbook_formula() {
    // Content parts: text parts are counted, images are not.
    let parts = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hello"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    let r = send(post("/v1/chat/completions", &parts)).await;
    assert_eq!(r.json()["usage"]["prompt_tokens"], 8);

    // Unknown model: counted as gpt-4o.
    let r = send(post("/v1/chat/completions", &hello("my-llama"))).await;
    assert_eq!(r.header("x-fake-prompt-tokens"), "8");

    // name, null content and tool calls, against tiktoken-rs directly.
    let body = json!({"model": "gpt-4", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "name": "alice", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]});
    let m = |role: &str, content: Option<&str>| tiktoken_rs::ChatCompletionRequestMessage {
        role: role.into(),
        content: content.map(Into::into),
        ..Default::default()
    };
    let expected = tiktoken_rs::num_tokens_from_messages(
        "gpt-4",
        &[
            m("system", Some("You are terse.")),
            tiktoken_rs::ChatCompletionRequestMessage {
                name: Some("alice".into()),
                ..m("user", Some("What's the weather in Paris?"))
            },
            tiktoken_rs::ChatCompletionRequestMessage {
                tool_calls: vec![tiktoken_rs::FunctionCall {
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                }],
                ..m("assistant", None)
            },
            m("tool", Some("sunny")),
        ],
    )
    .unwrap();
    let r = send(post("/v1/chat/completions", &body)).await;
    assert_eq!(r.json()["usage"]["prompt_tokens"], expected as u64);
    assert!(expected > 30, "{expected}");
}

#[tokio::test]
async fn chat_stream_with_include_usage() {
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-completion-tokens", "5")],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/event-stream");
    assert_eq!(r.header("x-fake-received-include-usage"), "true");
    let events = r.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    // role chunk + 5 content chunks + finish chunk + usage chunk
    assert_eq!(chunks.len(), 8);
    let (id, created) = (&chunks[0]["id"], &chunks[0]["created"]);
    for c in &chunks {
        assert_eq!(&c["id"], id);
        assert_eq!(&c["created"], created);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert_eq!(c["service_tier"], "default");
        assert_eq!(c["system_fingerprint"], "fp_fake");
        assert!(c.as_object().unwrap().contains_key("usage"), "{c}");
    }
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    for c in rest {
        assert!(c["usage"].is_null(), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
        assert_eq!(c["choices"][0]["index"], 0);
        assert!(c["choices"][0]["logprobs"].is_null());
    }
    assert_eq!(
        rest[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let mut content = String::new();
    for c in &rest[1..6] {
        let delta = c["choices"][0]["delta"].as_object().unwrap();
        assert_eq!(delta.len(), 1, "{c}");
        content.push_str(delta["content"].as_str().unwrap());
        assert!(c["choices"][0]["finish_reason"].is_null());
    }
    assert_eq!(rest[6]["choices"][0]["delta"], json!({}));
    assert_eq!(rest[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage_chunk["choices"], json!([]));
    let completion = o200k_len(&content);
    assert_eq!(completion, 5);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 8);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], completion);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 8 + completion);
    assert_eq!(
        usage_chunk["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_key() {
    for options in [None, Some(json!({"include_usage": false}))] {
        let mut body = hello("gpt-4o");
        body["stream"] = json!(true);
        if let Some(o) = options {
            body["stream_options"] = o;
        }
        let r = send(post("/v1/chat/completions", &body)).await;
        assert_eq!(r.header("x-fake-received-include-usage"), "false");
        let events = r.sse();
        assert_eq!(events.len(), 1 + 16 + 1 + 1);
        assert_eq!(events.last().unwrap(), "[DONE]");
        for e in &events[..events.len() - 1] {
            let c: Value = serde_json::from_str(e).unwrap();
            assert!(!c.as_object().unwrap().contains_key("usage"), "{c}");
            assert_eq!(c["choices"].as_array().unwrap().len(), 1);
        }
    }
}

#[tokio::test]
async fn max_tokens_cap_gives_length() {
    for (field, cap) in [("max_tokens", 3), ("max_completion_tokens", 4)] {
        let mut body = hello("gpt-4o");
        body[field] = json!(cap);
        let v = send(post("/v1/chat/completions", &body)).await.json();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], cap);
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(o200k_len(content), cap);
    }
    // A cap above the length changes nothing.
    let mut body = hello("gpt-4o");
    body["max_tokens"] = json!(100);
    body["stream"] = json!(true);
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-completion-tokens", "2")],
    ))
    .await;
    let events = r.sse();
    let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn cached_and_reasoning_tokens() {
    let r = send(post_with(
        "/v1/chat/completions",
        &hello("o3-mini"),
        &[
            ("x-fake-completion-tokens", "4"),
            ("x-fake-cached-tokens", "6"),
            ("x-fake-reasoning-tokens", "10"),
        ],
    ))
    .await;
    let u = &r.json()["usage"];
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 6);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 10);
    assert_eq!(u["completion_tokens"], 14);
    assert_eq!(u["total_tokens"], 22);
}

#[tokio::test]
async fn no_usage_header_removes_usage_everywhere() {
    let h = [("x-fake-no-usage", "1")];
    let r = send(post_with("/v1/chat/completions", &hello("gpt-4o"), &h)).await;
    assert!(!r.json().as_object().unwrap().contains_key("usage"));
    assert_eq!(r.header("x-fake-prompt-tokens"), "8");

    let mut body = hello("gpt-4o");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = send(post_with("/v1/chat/completions", &body, &h)).await;
    let events = r.sse();
    assert_eq!(events.len(), 1 + 16 + 1 + 1);
    assert!(events.iter().all(|e| !e.contains("usage")));

    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Hi"});
    let r = send(post_with("/v1/completions", &body, &h)).await;
    assert!(!r.json().as_object().unwrap().contains_key("usage"));

    let body = json!({"model": "text-embedding-3-small", "input": "Hi"});
    let r = send(post_with("/v1/embeddings", &body, &h)).await;
    assert!(!r.json().as_object().unwrap().contains_key("usage"));
}

#[tokio::test]
async fn legacy_completions() {
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test"});
    let r = send(post_with(
        "/v1/completions",
        &body,
        &[("x-fake-completion-tokens", "7")],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let cl100k = tiktoken_rs::cl100k_base_singleton();
    let prompt = cl100k.encode_ordinary("Say this is a test").len() as u64;
    assert_eq!(prompt, 5);
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(cl100k.encode_ordinary(text).len(), 7);
    assert_eq!(
        v,
        json!({"id": v["id"], "object": "text_completion", "created": v["created"],
            "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    );
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));

    // Arrays of strings and token arrays.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["Say this", "is a test"]});
    let v = send(post("/v1/completions", &body)).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": [1, 2, 3]});
    let v = send(post("/v1/completions", &body)).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let body = json!({"model": "x", "prompt": [[1, 2], [3]], "max_tokens": 2});
    let v = send(post("/v1/completions", &body)).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn legacy_completions_stream() {
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "stream": true,
        "stream_options": {"include_usage": true}});
    let r = send(post_with(
        "/v1/completions",
        &body,
        &[("x-fake-completion-tokens", "3")],
    ))
    .await;
    assert_eq!(r.header("content-type"), "text/event-stream");
    let events = r.sse();
    assert_eq!(events.len(), 3 + 1 + 1 + 1);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut text = String::new();
    for c in &chunks[..4] {
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c["usage"].is_null() && c.as_object().unwrap().contains_key("usage"));
        text.push_str(c["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"]["completion_tokens"],
        tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(&text)
            .len() as u64
    );
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let input = [
        "How do I reset my password?",
        "how can I reset my password",
        "What is the capital of France?",
    ];
    let body = json!({"model": "text-embedding-3-small", "input": input});
    let r = send(post("/v1/embeddings", &body)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let cl100k = tiktoken_rs::cl100k_base_singleton();
    let tokens: usize = input.iter().map(|s| cl100k.encode_ordinary(s).len()).sum();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": tokens, "total_tokens": tokens})
    );
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vecs: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            floats(&d["embedding"])
        })
        .collect();
    assert!(vecs.iter().all(|v| v.len() == 256));
    assert!(cosine(&vecs[0], &vecs[1]) > 0.8);
    assert!(cosine(&vecs[0], &vecs[2]) < 0.3);

    // base64: little-endian f32 of the same vector; dimensions honoured.
    for dims in [256, 64] {
        let body = json!({"model": "text-embedding-3-small", "input": input[0],
            "encoding_format": "base64", "dimensions": dims});
        let v = send(post("/v1/embeddings", &body)).await.json();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(decoded.len(), dims);
        if dims == 256 {
            assert_eq!(decoded, vecs[0]);
        }
    }

    // Token arrays: counted by length, embedded as their decoded text.
    let ids: Vec<u32> = cl100k.encode_ordinary("reset my password");
    let body = json!({"model": "text-embedding-3-small", "input": [ids.clone(), [1, 2]]});
    let v = send(post("/v1/embeddings", &body)).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], ids.len() + 2);
    assert!(cosine(&floats(&v["data"][0]["embedding"]), &vecs[0]) > 0.8);
    let body = json!({"model": "text-embedding-3-small", "input": ids});
    let v = send(post("/v1/embeddings", &body)).await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn models_list() {
    let r = send(Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["data"][0],
        json!({"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"})
    );
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o3-mini",
        "text-embedding-3-small",
    ] {
        assert!(ids.contains(&id), "{id}");
    }
}

#[tokio::test]
async fn routes_match_any_prefix_and_ignore_query() {
    for path in [
        "/v1/chat/completions",
        "/openai/v1/chat/completions?api-version=2024-10-21",
        "/chat/completions",
    ] {
        let r = send(post(path, &hello("gpt-4o"))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.json()["object"], "chat.completion");
        assert_eq!(r.header("x-fake-received-path"), path);
    }
    let r = send(post(
        "/openai/deployments/x/completions?a=b",
        &json!({"model": "m", "prompt": "p"}),
    ))
    .await;
    assert_eq!(r.json()["object"], "text_completion");
}

#[tokio::test]
async fn errors_are_openai_shaped() {
    let r = send(post("/v1/foo?x=1", &json!({"model": "gpt-4o"}))).await;
    assert_openai_error(&r, 404, "invalid_request_error", Value::Null);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Invalid URL (POST /v1/foo)", "type": "invalid_request_error",
            "param": null, "code": null}})
    );
    assert_eq!(r.header("x-fake-received-model"), "gpt-4o");

    let r = send(
        Request::get("/v1/chat/completions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_openai_error(&r, 404, "invalid_request_error", Value::Null);
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid URL (GET /v1/chat/completions)"
    );

    let bad = Request::post("/v1/chat/completions")
        .body(Body::from("{not json"))
        .unwrap();
    let r = send(bad).await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
    assert_eq!(r.header("x-fake-received-model"), "");
    assert_eq!(r.header("x-fake-prompt-tokens"), "0");

    let r = send(post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    ))
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);

    let r = send(post("/v1/chat/completions", &json!({"model": "gpt-4o"}))).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        json!("missing_required_parameter"),
    );
    assert_eq!(r.json()["error"]["param"], "messages");

    let r = send(post(
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small"}),
    ))
    .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        json!("missing_required_parameter"),
    );
}

#[tokio::test]
async fn forced_headers_win_over_the_request() {
    let mut forced = HeaderMap::new();
    forced.insert("x-fake-status", "503".parse().unwrap());
    let app = router(Config {
        forced_headers: forced,
        ..Config::default()
    });
    let body = hello("gpt-4o");
    let r = send_to(app.clone(), post("/v1/chat/completions", &body)).await;
    assert_eq!(r.status, 503);
    let r = send_to(
        app,
        post_with("/v1/chat/completions", &body, &[("x-fake-status", "200")]),
    )
    .await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn require_key() {
    let app = router(Config {
        require_key: Some("sk-test-123456789".into()),
        ..Config::default()
    });
    let body = hello("gpt-4o");
    let r = send_to(app.clone(), post("/v1/chat/completions", &body)).await;
    assert_openai_error(&r, 401, "invalid_request_error", json!("invalid_api_key"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Incorrect API key provided"));
    assert_eq!(r.header("x-fake-received-model"), "gpt-4o");

    let wrong = [("authorization", "Bearer sk-wrong-000000000")];
    let r = send_to(app.clone(), post_with("/v1/models", &body, &wrong)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("x-fake-received-authorization"),
        fp("Bearer sk-wrong-000000000")
    );

    for h in [
        ("authorization", "Bearer sk-test-123456789"),
        ("api-key", "sk-test-123456789"),
    ] {
        let r = send_to(app.clone(), post_with("/v1/chat/completions", &body, &[h])).await;
        assert_eq!(r.status, StatusCode::OK, "{h:?}");
    }
    let r = send_to(
        app,
        post_with(
            "/v1/chat/completions",
            &body,
            &[("api-key", "sk-test-123456789")],
        ),
    )
    .await;
    assert_eq!(r.header("x-fake-received-api-key"), fp("sk-test-123456789"));
    assert_eq!(r.header("x-fake-received-authorization"), "");
}

#[tokio::test]
async fn retry_after_and_one_rate_limited_key() {
    let body = hello("gpt-4o");
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-status", "503"), ("x-fake-retry-after", "7")],
    ))
    .await;
    assert_openai_error(&r, 503, "server_error", Value::Null);
    assert_eq!(r.header("retry-after"), "7");
    let limited = [
        ("x-fake-rate-limited-key", "sk-b"),
        ("x-fake-retry-after", "3"),
    ];
    for (auth, status) in [
        (("authorization", "Bearer sk-b"), 429),
        (("api-key", "sk-b"), 429),
        (("authorization", "Bearer sk-a"), 200),
    ] {
        let mut h = limited.to_vec();
        h.push(auth);
        let r = send(post_with("/v1/chat/completions", &body, &h)).await;
        assert_eq!(r.status.as_u16(), status, "{auth:?}");
        if status == 429 {
            assert_openai_error(&r, 429, "requests", json!("rate_limit_exceeded"));
            assert_eq!(r.header("retry-after"), "3");
        }
    }
}

#[tokio::test]
async fn fake_status() {
    let body = hello("gpt-4o");
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-status", "429")],
    ))
    .await;
    assert_openai_error(&r, 429, "requests", json!("rate_limit_exceeded"));
    assert_eq!(r.header("retry-after"), "1");
    assert_eq!(r.header("x-fake-prompt-tokens"), "8");

    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-status", "503")],
    ))
    .await;
    assert_openai_error(&r, 503, "server_error", Value::Null);
    assert!(r.headers.get("retry-after").is_none());

    let r = send(post_with(
        "/v1/embeddings",
        &body,
        &[("x-fake-status", "400")],
    ))
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);

    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-status", "abc")],
    ))
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
}

#[tokio::test]
async fn echo_headers() {
    let mut body = hello("gpt-4o");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let req = post_with(
        "/openai/v1/chat/completions?x=1",
        &body,
        &[
            ("authorization", "Bearer abc"),
            ("api-key", "k1"),
            ("x-custom", "one"),
            ("x-custom", "two"),
        ],
    );
    let raw = body.to_string();
    let r = send(req).await;
    assert_eq!(r.header("x-fake-received-model"), "gpt-4o");
    assert_eq!(
        r.header("x-fake-received-path"),
        "/openai/v1/chat/completions?x=1"
    );
    assert_eq!(r.header("x-fake-received-authorization"), fp("Bearer abc"));
    assert_eq!(r.header("x-fake-received-api-key"), fp("k1"));
    assert_eq!(r.header("x-fake-received-include-usage"), "true");
    assert_eq!(r.header("x-fake-prompt-tokens"), "8");
    assert_eq!(r.header("x-fake-received-body-sha256"), sha256_hex(&raw));
    let headers = echoed_headers(&r);
    assert_eq!(headers["x-custom"], "one,two");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["authorization"], fp("Bearer abc"));
    assert_eq!(headers["api-key"], fp("k1"));
    assert_eq!(fp("Bearer abc"), "sha256:c355dce96c161288", "a known value");
}

#[tokio::test]
async fn credentials_are_echoed_only_as_fingerprints() {
    let secrets = [
        ("authorization", "Bearer sk-secret-1"),
        ("proxy-authorization", "Basic c2VjcmV0LTI="),
        ("api-key", "secret-3"),
        ("x-api-key", "secret-4"),
        ("x-goog-api-key", "secret-5"),
    ];
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/nowhere"] {
        let r = send(post_with(path, &hello("gpt-4o"), &secrets)).await;
        let mut all: Vec<String> = r
            .headers
            .values()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let headers = echoed_headers(&r);
        all.push(headers.to_string());
        for (name, secret) in secrets {
            assert_eq!(headers[name], fp(secret), "{path} {name}");
            let bare = secret.rsplit(' ').next().unwrap();
            assert!(
                all.iter().all(|v| !v.contains(bare)),
                "{path}: {bare} echoed in {all:?}"
            );
        }
        let api_key = if path == "/v1/messages" {
            "secret-4"
        } else {
            "secret-3"
        };
        assert_eq!(r.header("x-fake-received-api-key"), fp(api_key), "{path}");
        assert_eq!(
            r.header("x-fake-received-authorization"),
            fp("Bearer sk-secret-1"),
            "{path}"
        );
    }
    // A repeated header: each value fingerprinted.
    let r = send(post_with(
        "/v1/chat/completions",
        &hello("gpt-4o"),
        &[("api-key", "a"), ("api-key", "b")],
    ))
    .await;
    assert_eq!(
        echoed_headers(&r)["api-key"],
        format!("{},{}", fp("a"), fp("b"))
    );
}

#[tokio::test]
async fn delay_before_headers() {
    let start = Instant::now();
    let r = send(post_with(
        "/v1/chat/completions",
        &hello("gpt-4o"),
        &[("x-fake-delay-ms", "200")],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(start.elapsed().as_millis() >= 200);
}

#[tokio::test]
async fn chunk_delay_paces_events() {
    let mut body = hello("gpt-4o");
    body["stream"] = json!(true);
    let req = post_with(
        "/v1/chat/completions",
        &body,
        &[
            ("x-fake-chunk-delay-ms", "40"),
            ("x-fake-completion-tokens", "3"),
        ],
    );
    let resp = app().oneshot(req).await.unwrap();
    let mut body = resp.into_body();
    let start = Instant::now();
    let mut gaps = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap().into_data().unwrap();
        assert!(frame.starts_with(b"data: ") && frame.ends_with(b"\n\n"));
        gaps.push(start.elapsed().as_millis());
        frames += 1;
    }
    // role + 3 content + finish + [DONE], one frame each, 40 ms apart.
    assert_eq!(frames, 6);
    assert!(gaps[5] >= 200, "{gaps:?}");
}

#[tokio::test]
async fn abort_after_events_fails_the_body() {
    for n in [0usize, 3, 100] {
        let mut body = hello("gpt-4o");
        body["stream"] = json!(true);
        let n_text = n.to_string();
        let req = post_with(
            "/v1/chat/completions",
            &body,
            &[
                ("x-fake-abort-after-events", n_text.as_str()),
                ("x-fake-completion-tokens", "5"),
            ],
        );
        let resp = app().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut events = Vec::new();
        let err = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let data = frame.into_data().unwrap();
                    events.extend(sse_events(std::str::from_utf8(&data).unwrap()));
                }
                Some(Err(e)) => break e,
                None => panic!("stream ended cleanly after {events:?}"),
            }
        };
        assert!(err.to_string().contains("aborted"), "{err}");
        // 1 role + 5 content + finish + [DONE] = 8 events; never [DONE].
        assert_eq!(events.len(), n.min(7), "n={n}");
        assert!(!events.iter().any(|e| e == "[DONE]"));
    }
}

fn weather_tools(model: &str) -> Value {
    json!({"model": model,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})
}

#[tokio::test]
async fn chat_tool_call_json() {
    let tool = [
        ("x-fake-tool-call", "get_weather"),
        ("x-fake-id", "chatcmpl-tools"),
    ];
    let r = send(post_with(
        "/v1/chat/completions",
        &weather_tools("gpt-4o"),
        &tool,
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let call_id = v["choices"][0]["message"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        call_id.starts_with("call_") && call_id.len() == 29,
        "{call_id}"
    );
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = o200k_len("get_weather") + o200k_len(r#"{"city":"Paris"}"#);
    assert_eq!(
        v,
        json!({
            "id": "chatcmpl-tools", "object": "chat.completion", "created": 1_700_000_000,
            "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": call_id, "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                "refusal": null, "annotations": []},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_fake"
        })
    );
    assert!(prompt > 8, "the message counts: {prompt}");
    // The same fixed id gives the same call id; without one, a fresh id each time.
    let again = send(post_with(
        "/v1/chat/completions",
        &weather_tools("gpt-4o"),
        &tool,
    ))
    .await;
    assert_eq!(again.body, r.body);
    let fresh = send(post_with(
        "/v1/chat/completions",
        &weather_tools("gpt-4o"),
        &[("x-fake-tool-call", "get_weather")],
    ))
    .await
    .json();
    assert_ne!(
        fresh["choices"][0]["message"]["tool_calls"][0]["id"],
        call_id
    );

    // No header, no tools or tool_choice "none": a plain text answer.
    let mut none = weather_tools("gpt-4o");
    none["tool_choice"] = json!("none");
    let no_tools = hello("gpt-4o");
    for (body, headers) in [
        (&weather_tools("gpt-4o"), &[][..]),
        (&no_tools, &tool[..]),
        (&none, &tool[..]),
    ] {
        let v = send(post_with("/v1/chat/completions", body, headers))
            .await
            .json();
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
        assert!(
            v["choices"][0]["message"].get("tool_calls").is_none(),
            "{v}"
        );
    }
    // A tool the request does not offer.
    let r = send(post_with(
        "/v1/chat/completions",
        &weather_tools("gpt-4o"),
        &[("x-fake-tool-call", "get_stock_price")],
    ))
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
    assert_eq!(r.json()["error"]["param"], "tools");
}

#[tokio::test]
async fn chat_tool_call_stream() {
    let mut body = weather_tools("gpt-4o-mini");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[("x-fake-tool-call", "get_weather")],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/event-stream");
    let events = r.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    let (finish, calls) = rest.split_last().unwrap();
    // The first delta: role, null content, the call's index, id, type and name, no arguments.
    let first = &calls[0]["choices"][0]["delta"];
    let call_id = first["tool_calls"][0]["id"].as_str().unwrap();
    assert!(call_id.starts_with("call_"), "{call_id}");
    assert_eq!(
        *first,
        json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id,
            "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
            "refusal": null})
    );
    // Then the arguments in pieces, each delta with only the index and a fragment.
    assert!(calls.len() > 2, "arguments in several pieces: {calls:?}");
    let mut arguments = String::new();
    for c in &calls[1..] {
        let delta = &c["choices"][0]["delta"];
        assert_eq!(delta.as_object().unwrap().len(), 1, "{delta}");
        let tc = &delta["tool_calls"][0];
        assert_eq!(tc.as_object().unwrap().len(), 2, "{tc}");
        assert_eq!(tc["index"], 0);
        assert_eq!(tc["function"].as_object().unwrap().len(), 1, "{tc}");
        arguments.push_str(tc["function"]["arguments"].as_str().unwrap());
        assert!(c["choices"][0]["finish_reason"].is_null());
    }
    assert_eq!(arguments, r#"{"city":"Paris"}"#);
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    for c in rest {
        assert!(c["usage"].is_null() && c.as_object().unwrap().contains_key("usage"));
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    // Usage as for the JSON answer.
    let json_answer = send(post_with(
        "/v1/chat/completions",
        &weather_tools("gpt-4o-mini"),
        &[("x-fake-tool-call", "get_weather")],
    ))
    .await
    .json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], json_answer["usage"]);
}

#[tokio::test]
async fn chat_stream_error_after_events_is_in_band() {
    let mut body = hello("gpt-4o");
    body["stream"] = json!(true);
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[
            ("x-fake-stream-error-after-events", "3"),
            ("x-fake-completion-tokens", "5"),
        ],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let events = r.sse();
    // Three events, then the error; no [DONE] and no finish reason.
    assert_eq!(events.len(), 4, "{events:?}");
    for e in &events[..3] {
        let c: Value = serde_json::from_str(e).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["choices"][0]["finish_reason"].is_null());
    }
    let err: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    // Never after the last event: a large count still drops [DONE].
    let r = send(post_with(
        "/v1/chat/completions",
        &body,
        &[
            ("x-fake-stream-error-after-events", "100"),
            ("x-fake-completion-tokens", "2"),
        ],
    ))
    .await;
    let events = r.sse();
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    assert!(events.last().unwrap().starts_with("{\"error\""));
}

#[tokio::test]
async fn stream_options_require_stream() {
    let mut body = hello("gpt-4o");
    body["stream_options"] = json!({"include_usage": true});
    let r = send(post("/v1/chat/completions", &body)).await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
    assert_eq!(r.json()["error"]["param"], "stream_options");
}

mod anthropic;
mod bedrock;
mod gemini;
mod params;
mod responses;
mod vertex;
