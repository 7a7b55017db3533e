//! Provider formats in real Envoy: OpenAI clients in front of an Anthropic-format provider (the
//! request translated to the Messages API and the answer, JSON, SSE or error, back), and Azure
//! OpenAI's deployment paths.

mod support;

use serde_json::{json, Value};
use support::*;

const CLAUDE_KEY: &str = "sk-ant-test-key";

fn gateway(fake: &Fake) -> Gateway {
    let config = json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "claude": {"cluster": "backup", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
            "azure": {"cluster": "backup", "format": "azure", "api_key_env": "BACKUP_API_KEY",
                      "models": {"gpt-4o": "my-gpt4o"}}
        },
        "routes": [{"match": {"model": "claude-*"}, "to": {"provider": "claude"}},
                   {"match": {"model": "gpt-4o"}, "to": {"provider": "azure"}}],
        "default": {"to": {"provider": "openai"}},
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}],
        "tokenizer": {"preload": ["o200k_base"]}
    });
    // A case makes OpenAI answer 429, and the next requests go to it again.
    let mut opts = Options {
        plugin_config: Some(without_cooldown(config)),
        ..Options::default()
    };
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(fake, opts)
}

fn body(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "stream": stream, "max_tokens": 64,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hello"}]})
}

#[test]
fn openai_requests_reach_an_anthropic_provider_translated() {
    let fake = Fake::start(Some(CLAUDE_KEY));
    let gw = gateway(&fake);

    let r = chat(&gw, &body(false), &[("x-fake-cache-read-tokens", "4")]);
    assert_eq!(r.status, 200, "{}", r.text());
    // What reached the provider: the Messages API, with its key and version.
    assert_eq!(r.header("x-fake-received-path"), Some("/v1/messages"));
    assert_eq!(
        r.header("x-fake-received-api-key"),
        Some(fingerprint(CLAUDE_KEY).as_str())
    );
    assert!(r.header("x-fake-received-anthropic-version").is_some());
    assert_eq!(r.header("x-fake-received-model"), Some("claude-sonnet-4-5"));
    // What the client got: an OpenAI chat.completion.
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len()
            > 1
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    // A stream: OpenAI chunks, the usage chunk only when asked for.
    let r = chat(&gw, &body(true), &[("x-fake-completion-tokens", "6")]);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{text}");
    let mut with_usage = body(true);
    with_usage["stream_options"] = json!({"include_usage": true});
    let r = chat(&gw, &with_usage, &[("x-fake-completion-tokens", "6")]);
    let last = r
        .text()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .last()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .unwrap();
    assert_eq!(last["usage"]["completion_tokens"], 6, "{last}");

    // Provider errors come back in OpenAI's shape.
    let r = chat(&gw, &body(false), &[("x-fake-status", "429")]);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    // Usage is accounted from the translated answer.
    let log = gw.access_log(4);
    assert_eq!(log[1]["completion_tokens"], "6", "{}", log[1]);
    assert_eq!(log[1]["usage_estimated"], "false");
    assert_eq!(log[0]["provider"], "claude");
}

#[test]
fn the_openai_python_sdk_reaches_an_anthropic_provider() {
    let fake = Fake::start(Some(CLAUDE_KEY));
    let gw = gateway(&fake);
    run_sdk_script(&gw, "openai_to_anthropic.py", "openai sdk to anthropic: ok");
}

#[test]
fn azure_providers_get_deployment_paths() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]});
    let r = chat(&gw, &body, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-fake-received-path"),
        Some("/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21")
    );
    assert_eq!(
        r.header("x-fake-received-api-key"),
        Some(fingerprint(BACKUP_KEY).as_str())
    );
    assert_eq!(r.header("x-fake-received-authorization").unwrap_or(""), "");
    assert_eq!(r.json()["usage"]["prompt_tokens"], 8);
    let e = json!({"model": "gpt-4o", "input": "Hello"});
    let r = post(
        &gw.url("/v1/embeddings"),
        &[
            ("authorization", &format!("Bearer {DEMO_KEY}")),
            ("content-type", "application/json"),
        ],
        e.to_string().as_bytes(),
    );
    assert_eq!(
        r.header("x-fake-received-path"),
        Some("/openai/deployments/my-gpt4o/embeddings?api-version=2024-10-21")
    );
}

/// POST an Anthropic Messages request as Claude Code would (`x-api-key`, `anthropic-version`,
/// `?beta=true`).
fn messages(gw: &Gateway, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![
        ("content-type", "application/json"),
        ("x-api-key", DEMO_KEY),
        ("anthropic-version", "2023-06-01"),
    ];
    h.extend_from_slice(extra);
    post(
        &gw.url("/v1/messages?beta=true"),
        &h,
        body.to_string().as_bytes(),
    )
}

#[test]
fn anthropic_clients_reach_an_openai_provider_translated() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 64, "system": "Be brief.",
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]});
    let r = messages(&gw, &body, &[("x-fake-cached-tokens", "2")]);
    assert_eq!(r.status, 200, "{}", r.text());
    // The provider got an OpenAI chat request, with its own key and no Anthropic header.
    assert_eq!(
        r.header("x-fake-received-path"),
        Some("/v1/chat/completions")
    );
    assert_eq!(
        r.header("x-fake-received-authorization"),
        Some(fingerprint(&format!("Bearer {OPENAI_KEY}")).as_str())
    );
    let sent = r.received_headers();
    assert!(sent.get("anthropic-version").is_none(), "{sent}");
    assert!(sent.get("x-api-key").is_none(), "{sent}");
    // The client got an Anthropic message.
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 2);
    let prompt = v["usage"]["input_tokens"].as_u64().unwrap() + 2;

    // A stream: Anthropic events, the usage in message_delta.
    let mut b = body.clone();
    b["stream"] = true.into();
    let r = messages(&gw, &b, &[("x-fake-completion-tokens", "9")]);
    assert_eq!(r.status, 200);
    let text = r.text();
    let names: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert!(!text.contains("chat.completion.chunk"), "{text}");
    let delta: Value = text
        .split("\n\n")
        .find(|e| e.starts_with("event: message_delta"))
        .and_then(|e| e.lines().nth(1)?.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 9, "{delta}");

    // Accounted like any request, as the Messages endpoint.
    let log = gw.access_log(2);
    assert_eq!(log[0]["endpoint"], "messages", "{}", log[0]);
    assert_eq!(log[0]["prompt_tokens"], prompt.to_string());
    assert_eq!(log[1]["completion_tokens"], "9");
    assert_eq!(log[1]["usage_estimated"], "false");

    // Local errors in the Messages API's shape.
    let r = messages(&gw, &json!({"model": "gpt-4o-mini", "max_tokens": 5}), &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error", "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");

    // Anthropic to Anthropic passes the client's request through (model mapped, key swapped).
    let mut b = body.clone();
    b["model"] = "claude-sonnet-4-5".into();
    b["metadata"] = json!({"user_id": "u-1"});
    let r = messages(&gw, &b, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fake-received-path"), Some("/v1/messages"));
    assert_eq!(
        r.header("x-fake-received-api-key"),
        Some(fingerprint(CLAUDE_KEY).as_str())
    );
    assert_eq!(r.json()["type"], "message");
    let log = gw.access_log(4);
    assert_eq!(log[3]["provider"], "claude");
    assert_eq!(log[3]["usage_estimated"], "false", "{}", log[3]);
}

#[test]
fn the_anthropic_python_sdk_reaches_an_openai_provider() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    run_sdk_script(&gw, "anthropic_to_openai.py", "anthropic sdk to openai: ok");
}
