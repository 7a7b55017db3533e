//! The Anthropic Messages API mode (`POST /v1/messages`), through the real router.

use std::time::Instant;

use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{app, echoed_headers, fp, o200k_len, post_with, send, send_to, sha256_hex, Reply};
use crate::app::{router, Config};

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}]})
}

fn weather_tools() -> Value {
    json!([{"name": "get_weather", "description": "Get the current weather in a given location",
        "input_schema": {"type": "object", "properties": {
            "location": {"type": "string", "description": "The city and state"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"]}},
        {"name": "get_time", "input_schema": {"type": "object",
            "properties": {"tz": {"type": "string"}}}}])
}

/// POST /v1/messages with `anthropic-version` and `extra` headers.
async fn messages(body: &Value, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![VERSION];
    headers.extend_from_slice(extra);
    send(post_with("/v1/messages", body, &headers)).await
}

/// The events of an Anthropic SSE body as (event name, data), checking the framing: every
/// event is `event: NAME\ndata: JSON\n\n` and the JSON's `type` is NAME.
fn events(text: &str) -> Vec<(String, Value)> {
    assert!(text.ends_with("\n\n"), "events end with a blank line");
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|ev| {
            let (name, data) = ev
                .strip_prefix("event: ")
                .and_then(|ev| ev.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an event: {ev:?}"));
            assert!(!data.contains('\n'), "one data line: {ev:?}");
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{ev}");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn assert_anthropic_error(reply: &Reply, status: u16, kind: &str, message: &str) {
    assert_eq!(reply.status.as_u16(), status);
    assert_eq!(reply.header("content-type"), "application/json");
    let request_id = reply.header("request-id");
    assert!(request_id.starts_with("req_011C") && request_id.len() == 28);
    assert_eq!(reply.header("x-request-id"), request_id);
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {"type": kind, "message": message},
            "request_id": request_id})
    );
}

fn usage(input: u64, creation: u64, read: u64, output: u64) -> Value {
    json!({"input_tokens": input, "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": creation, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output, "service_tier": "standard"})
}

#[tokio::test]
async fn json_message_has_anthropic_shape() {
    let r = messages(&hello("claude-sonnet-4-5"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    let prompt = o200k_len("Hello, Claude");
    assert_eq!(r.header("x-fake-prompt-tokens"), prompt.to_string());
    let request_id = r.header("request-id");
    assert!(request_id.starts_with("req_011C"), "{request_id}");
    let v = r.json();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("msg_01") && id.len() == 28, "{id}");
    let text = v["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("The quick brown fox"), "{text}");
    assert_eq!(o200k_len(text), 16, "default completion length");
    assert_eq!(
        v,
        json!({"id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": usage(prompt, 0, 0, 16)})
    );
    // Field order as in the docs' example.
    let body = String::from_utf8(r.body.clone()).unwrap();
    let pos = |k: &str| body.find(&format!("\"{k}\":")).unwrap();
    assert!(pos("id") < pos("type") && pos("role") < pos("model"));
    assert!(pos("content") < pos("stop_reason") && pos("stop_sequence") < pos("usage"));
}

#[tokio::test]
async fn input_tokens_count_system_and_messages_text() {
    let body = json!({"model": "claude-3-5-haiku-latest", "max_tokens": 50,
        "system": "You are a weather bot.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                    "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
                    "input": {"location": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A",
                "content": "15 degrees, sunny"}]}]});
    let expected: u64 = [
        "You are a weather bot.",
        "Weather in Paris?",
        "Checking.",
        "get_weather",
        r#"{"location":"Paris"}"#,
        "15 degrees, sunny",
    ]
    .iter()
    .map(|s| o200k_len(s))
    .sum();
    let r = messages(&body, &[]).await;
    assert_eq!(r.json()["usage"]["input_tokens"], expected);
    assert_eq!(r.header("x-fake-prompt-tokens"), expected.to_string());

    // System as an array of text blocks counts the same as the string.
    let mut blocks = body.clone();
    blocks["system"] = json!([{"type": "text", "text": "You are a weather bot.",
        "cache_control": {"type": "ephemeral"}}]);
    let r = messages(&blocks, &[]).await;
    assert_eq!(r.json()["usage"]["input_tokens"], expected);
}

#[tokio::test]
async fn stream_events_in_order_with_every_field() {
    let mut body = hello("claude-opus-4-1");
    body["stream"] = json!(true);
    let r = messages(&body, &[("x-fake-completion-tokens", "5")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/event-stream; charset=utf-8");
    assert_eq!(r.header("cache-control"), "no-cache");
    let ev = events(std::str::from_utf8(&r.body).unwrap());
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let prompt = o200k_len("Hello, Claude");
    let id = ev[0].1["message"]["id"].as_str().unwrap();
    assert!(id.starts_with("msg_01"), "{id}");
    assert_eq!(
        ev[0].1,
        json!({"type": "message_start", "message": {"id": id, "type": "message",
            "role": "assistant", "model": "claude-opus-4-1", "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage(prompt, 0, 0, 1)}})
    );
    assert_eq!(
        ev[1].1,
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(ev[2].1, json!({"type": "ping"}));
    let mut text = String::new();
    for (_, d) in &ev[3..8] {
        let piece = d["delta"]["text"].as_str().unwrap();
        assert_eq!(
            d,
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}})
        );
        text.push_str(piece);
    }
    assert_eq!(text, "The quick brown fox jumps");
    assert_eq!(ev[8].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        ev[9].1,
        json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": prompt, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 5}})
    );
    assert_eq!(ev[10].1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn max_tokens_caps_the_output() {
    let mut body = hello("claude-x");
    body["max_tokens"] = json!(3);
    let v = messages(&body, &[]).await.json();
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(v["content"][0]["text"], "The quick brown");

    body["stream"] = json!(true);
    let r = messages(&body, &[("x-fake-completion-tokens", "40")]).await;
    let ev = events(std::str::from_utf8(&r.body).unwrap());
    let deltas = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .count();
    assert_eq!(deltas, 3);
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 3);

    // A larger max_tokens changes nothing.
    let mut body = hello("claude-x");
    body["max_tokens"] = json!(100);
    let v = messages(&body, &[("x-fake-completion-tokens", "7")])
        .await
        .json();
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 7);
}

#[tokio::test]
async fn stop_sequences_cut_the_text() {
    let mut body = hello("claude-x");
    body["stop_sequences"] = json!(["lazy", " fox"]);
    let v = messages(&body, &[]).await.json();
    assert_eq!(v["content"][0]["text"], "The quick brown");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], " fox");
    // "The quick brown fox" were generated: 4 tokens.
    assert_eq!(v["usage"]["output_tokens"], 4);

    body["stream"] = json!(true);
    let r = messages(&body, &[]).await;
    let ev = events(std::str::from_utf8(&r.body).unwrap());
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "The quick brown");
    assert_eq!(
        ev[ev.len() - 2].1["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": " fox"})
    );

    // A sequence that is not generated changes nothing.
    let mut body = hello("claude-x");
    body["stop_sequences"] = json!(["zebra"]);
    let v = messages(&body, &[]).await.json();
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
}

#[tokio::test]
async fn tool_use_json() {
    let mut body = hello("claude-x");
    body["tools"] = weather_tools();
    let r = messages(&body, &[("x-fake-tool-call", "get_weather")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let block = &v["content"][0];
    let id = block["id"].as_str().unwrap();
    assert!(id.starts_with("toolu_01") && id.len() == 30, "{id}");
    let input = json!({"location": "fake", "unit": "celsius"});
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(
        block,
        &json!({"type": "tool_use", "id": id, "name": "get_weather", "input": input})
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert!(v["stop_sequence"].is_null());
    assert_eq!(
        v["usage"]["output_tokens"],
        o200k_len("get_weather") + o200k_len(&input.to_string())
    );

    // Without tools the header is ignored; with tool_choice none too.
    let r = messages(&hello("m"), &[("x-fake-tool-call", "get_weather")]).await;
    assert_eq!(r.json()["content"][0]["type"], "text");
    body["tool_choice"] = json!({"type": "none"});
    let r = messages(&body, &[("x-fake-tool-call", "get_weather")]).await;
    assert_eq!(r.json()["stop_reason"], "end_turn");

    // tool_choice forces a tool without the header: the named one, or the first for "any".
    body["tool_choice"] = json!({"type": "tool", "name": "get_time"});
    let v = messages(&body, &[]).await.json();
    assert_eq!(v["content"][0]["name"], "get_time");
    assert_eq!(v["content"][0]["input"], json!({"tz": "fake"}));
    body["tool_choice"] = json!({"type": "any"});
    let v = messages(&body, &[]).await.json();
    assert_eq!(v["content"][0]["name"], "get_weather");
    // auto, no header: text.
    body["tool_choice"] = json!({"type": "auto"});
    let v = messages(&body, &[]).await.json();
    assert_eq!(v["content"][0]["type"], "text");

    // A tool the request does not define.
    let r = messages(&body, &[("x-fake-tool-call", "nope")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn tool_use_stream_reassembles_input_json() {
    let mut body = hello("claude-x");
    body["tools"] = weather_tools();
    body["stream"] = json!(true);
    let r = messages(&body, &[("x-fake-tool-call", "get_weather")]).await;
    let ev = events(std::str::from_utf8(&r.body).unwrap());
    let n = ev.len();
    assert_eq!(
        names(&ev[..4]),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta"
        ]
    );
    assert_eq!(
        names(&ev[n - 3..]),
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let block = &ev[1].1["content_block"];
    let id = block["id"].as_str().unwrap();
    assert!(id.starts_with("toolu_01"), "{id}");
    assert_eq!(
        ev[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block":
            {"type": "tool_use", "id": id, "name": "get_weather", "input": {}}})
    );
    // The first delta is empty, as the API sends it; the rest are JSON pieces.
    assert_eq!(ev[3].1["delta"]["partial_json"], "");
    let mut json_text = String::new();
    for (name, d) in &ev[3..n - 3] {
        assert_eq!(name, "content_block_delta");
        let piece = d["delta"]["partial_json"].as_str().unwrap();
        assert_eq!(
            d,
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece}})
        );
        json_text.push_str(piece);
    }
    assert!(n - 3 - 4 >= 2, "input split into several pieces");
    let input: Value = serde_json::from_str(&json_text).expect("valid JSON");
    assert_eq!(input, json!({"location": "fake", "unit": "celsius"}));
    let delta = &ev[n - 2].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "tool_use", "stop_sequence": null})
    );
    assert_eq!(
        delta["usage"]["output_tokens"],
        o200k_len("get_weather") + o200k_len(&json_text)
    );
}

#[tokio::test]
async fn request_errors_are_anthropic_shaped() {
    let mut body = hello("claude-x");
    body.as_object_mut().unwrap().remove("max_tokens");
    let r = messages(&body, &[]).await;
    assert_anthropic_error(
        &r,
        400,
        "invalid_request_error",
        "max_tokens: Field required",
    );
    assert_eq!(r.header("x-fake-received-model"), "claude-x");

    let r = send(post_with("/v1/messages", &hello("claude-x"), &[])).await;
    assert_anthropic_error(
        &r,
        400,
        "invalid_request_error",
        "anthropic-version: header is required",
    );
    assert_eq!(r.header("x-fake-received-anthropic-version"), "");

    let r = messages(&json!({"model": "m", "max_tokens": 5}), &[]).await;
    assert_anthropic_error(&r, 400, "invalid_request_error", "messages: Field required");

    let req = axum::http::Request::post("/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(r.header("x-fake-prompt-tokens"), "0");

    let r = messages(&hello("m"), &[("x-fake-completion-tokens", "many")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["type"], "error");
}

#[tokio::test]
async fn require_key_wants_x_api_key() {
    let app = router(Config {
        require_key: Some("sk-ant-test-123".into()),
        ..Config::default()
    });
    let body = hello("claude-x");
    let r = send_to(app.clone(), post_with("/v1/messages", &body, &[VERSION])).await;
    assert_anthropic_error(
        &r,
        401,
        "authentication_error",
        "x-api-key header is required",
    );

    let wrong = [VERSION, ("x-api-key", "sk-ant-wrong")];
    let r = send_to(app.clone(), post_with("/v1/messages", &body, &wrong)).await;
    assert_anthropic_error(&r, 401, "authentication_error", "invalid x-api-key");
    assert_eq!(r.header("x-fake-received-api-key"), fp("sk-ant-wrong"));

    // The OpenAI headers do not authenticate Anthropic requests.
    let bearer = [VERSION, ("authorization", "Bearer sk-ant-test-123")];
    let r = send_to(app.clone(), post_with("/v1/messages", &body, &bearer)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The key is checked before the version.
    let r = send_to(app.clone(), post_with("/v1/messages", &body, &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let good = [VERSION, ("x-api-key", "sk-ant-test-123")];
    let r = send_to(app, post_with("/v1/messages", &body, &good)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-fake-received-api-key"), fp("sk-ant-test-123"));
}

#[tokio::test]
async fn fake_status_gives_anthropic_errors() {
    let body = hello("claude-x");
    let r = messages(&body, &[("x-fake-status", "529")]).await;
    assert_anthropic_error(&r, 529, "overloaded_error", "Overloaded");
    assert!(r.headers.get("retry-after").is_none());

    let r = messages(&body, &[("x-fake-status", "429")]).await;
    assert_eq!(r.status.as_u16(), 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), "1");

    for (status, kind) in [
        ("500", "api_error"),
        ("400", "invalid_request_error"),
        ("401", "authentication_error"),
        ("403", "permission_error"),
        ("404", "not_found_error"),
    ] {
        let r = messages(&body, &[("x-fake-status", status)]).await;
        assert_eq!(r.status.as_str(), status);
        assert_eq!(r.json()["error"]["type"], kind, "{status}");
        assert_eq!(r.json()["request_id"], r.header("request-id"));
    }
}

#[tokio::test]
async fn mid_stream_error_event() {
    let mut body = hello("claude-x");
    body["stream"] = json!(true);
    for (n, sent) in [(0usize, 0usize), (3, 3), (100, 10)] {
        let n_text = n.to_string();
        let r = messages(
            &body,
            &[
                ("x-fake-stream-error-after-events", n_text.as_str()),
                ("x-fake-completion-tokens", "5"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "the error comes after the 200");
        let ev = events(std::str::from_utf8(&r.body).unwrap());
        // 11 events in all; never the message_stop.
        assert_eq!(ev.len(), sent + 1, "n={n}");
        let (name, data) = ev.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(
            data,
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        );
        assert!(!names(&ev).contains(&"message_stop"));
        if sent > 0 {
            assert_eq!(ev[0].0, "message_start");
        }
    }
}

#[tokio::test]
async fn cache_usage_fields() {
    let body = json!({"model": "claude-x", "max_tokens": 100,
        "system": [{"type": "text", "text": "A long shared prefix of documents. ".repeat(20),
            "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Summarise."}]});
    let prompt = messages(&body, &[]).await.json()["usage"]["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(prompt > 100, "{prompt}");
    let h = [
        ("x-fake-cache-read-tokens", "60"),
        ("x-fake-cache-creation-tokens", "25"),
        ("x-fake-completion-tokens", "4"),
    ];
    let r = messages(&body, &h).await;
    assert_eq!(r.json()["usage"], usage(prompt - 85, 25, 60, 4));
    assert_eq!(r.header("x-fake-prompt-tokens"), prompt.to_string());

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let r = messages(&stream, &h).await;
    let ev = events(std::str::from_utf8(&r.body).unwrap());
    assert_eq!(ev[0].1["message"]["usage"], usage(prompt - 85, 25, 60, 1));
    assert_eq!(
        ev[ev.len() - 2].1["usage"],
        json!({"input_tokens": prompt - 85, "cache_creation_input_tokens": 25,
            "cache_read_input_tokens": 60, "output_tokens": 4})
    );

    // More cached than counted: input_tokens is 0, the cache fields as asked.
    let r = messages(&hello("m"), &[("x-fake-cache-read-tokens", "5000")]).await;
    assert_eq!(r.json()["usage"]["input_tokens"], 0);
    assert_eq!(r.json()["usage"]["cache_read_input_tokens"], 5000);
}

#[tokio::test]
async fn echo_headers_and_prefixed_paths() {
    let body = hello("claude-haiku-4-5");
    let raw = body.to_string();
    let r = send(post_with(
        "/anthropic/v1/messages?beta=true",
        &body,
        &[
            VERSION,
            ("x-api-key", "sk-ant-abc"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
        ],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["type"], "message");
    assert_eq!(r.header("x-fake-received-model"), "claude-haiku-4-5");
    assert_eq!(
        r.header("x-fake-received-path"),
        "/anthropic/v1/messages?beta=true"
    );
    assert_eq!(r.header("x-fake-received-api-key"), fp("sk-ant-abc"));
    assert_eq!(r.header("x-fake-received-anthropic-version"), "2023-06-01");
    assert_eq!(r.header("x-fake-received-authorization"), "");
    assert_eq!(r.header("x-fake-received-body-sha256"), sha256_hex(&raw));
    let headers = echoed_headers(&r);
    assert_eq!(headers["anthropic-beta"], "prompt-caching-2024-07-31");
    assert_eq!(headers["x-api-key"], fp("sk-ant-abc"));
    assert_eq!(r.header("x-request-id"), r.header("request-id"));

    // The OpenAI endpoints do not echo the Anthropic version.
    let r = send(post_with(
        "/v1/chat/completions",
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}),
        &[VERSION],
    ))
    .await;
    assert!(r.headers.get("x-fake-received-anthropic-version").is_none());
}

#[tokio::test]
async fn fixed_id_makes_responses_identical() {
    let mut body = hello("claude-x");
    body["tools"] = weather_tools();
    let h = [
        ("x-fake-id", "msg_fixed"),
        ("x-fake-tool-call", "get_weather"),
    ];
    for stream in [false, true] {
        body["stream"] = json!(stream);
        let a = messages(&body, &h).await;
        let b = messages(&body, &h).await;
        assert_eq!(a.body, b.body, "stream={stream}");
        assert!(String::from_utf8_lossy(&a.body).contains("\"msg_fixed\""));
        assert!(String::from_utf8_lossy(&a.body).contains("\"toolu_01"));
    }
}

#[tokio::test]
async fn delays_and_abort() {
    let mut body = hello("claude-x");
    body["stream"] = json!(true);
    let start = Instant::now();
    let r = messages(
        &body,
        &[
            ("x-fake-delay-ms", "100"),
            ("x-fake-chunk-delay-ms", "20"),
            ("x-fake-completion-tokens", "2"),
        ],
    )
    .await;
    // 8 events, 20 ms apart after a 100 ms delay.
    assert_eq!(events(std::str::from_utf8(&r.body).unwrap()).len(), 8);
    assert!(start.elapsed().as_millis() >= 240, "{:?}", start.elapsed());

    let req = post_with(
        "/v1/messages",
        &body,
        &[
            VERSION,
            ("x-fake-abort-after-events", "4"),
            ("x-fake-completion-tokens", "5"),
        ],
    );
    let resp = app().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut text = String::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let data = frame.into_data().unwrap();
                assert!(data.starts_with(b"event: ") && data.ends_with(b"\n\n"));
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
            Some(Err(e)) => break e,
            None => panic!("stream ended cleanly after {text:?}"),
        }
    };
    assert!(err.to_string().contains("aborted"), "{err}");
    assert_eq!(
        names(&events(&text)),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta"
        ]
    );
}
