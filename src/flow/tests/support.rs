//! What the flow tests share: a plugin configuration like `envoy/gateway.yaml`'s, a host with
//! the providers' keys in its environment, and a request driven through every stage.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::flow::vm::Vm;
use crate::flow::{Exchange, Step};
use crate::host::fake::FakeHost;
use crate::metrics::stat_name;
use crate::names::metric;

/// The key consumer `team-a` calls with.
pub const KEY: &str = "sk-team-a";
/// The providers' keys, as the VM environment holds them.
pub const ENV: [(&str, &str); 3] = [
    ("OPENAI_API_KEY", "sk-openai"),
    ("ANTHROPIC_API_KEY", "sk-ant"),
    ("AZURE_API_KEY", "az-key"),
];
/// The time `FakeHost::new` starts at, in ms.
pub const NOW_MS: u64 = 1_767_225_600_000;

/// Providers openai, claude (Anthropic) and azure; routes by header, model, glob, split and
/// failover chain; one consumer with a key.
pub fn config() -> Value {
    json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "claude": {"cluster": "anthropic", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
            "azure": {"cluster": "azure", "format": "azure", "api_key_env": "AZURE_API_KEY"}
        },
        "routes": [
            {"name": "fast-tier", "match": {"header": {"name": "x-llm-tier", "value": "fast"}},
             "to": {"provider": "openai", "model": "gpt-4o-mini"}},
            {"name": "mini", "match": {"model": "gpt-4o-mini"}, "to": {"provider": "openai"}},
            {"name": "fast", "match": {"model": "fast"}, "to": {"provider": "openai", "model": "gpt-4o-mini"}},
            {"name": "claude", "match": {"model": "claude-*"}, "models": ["claude-sonnet-4-5"],
             "to": {"provider": "claude"}},
            {"name": "azure", "match": {"model": "azure-*"}, "to": {"provider": "azure", "model": "gpt-4o"}},
            {"name": "gpt-4.1", "match": {"model": "gpt-4.1*"}, "models": ["gpt-4.1"], "to": {"provider": "openai"},
             "fallback": {"cluster": "failover-openai-claude",
                          "to": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}},
            {"name": "split", "match": {"model": "gpt-4o"},
             "split": [{"provider": "openai", "weight": 90}, {"provider": "azure", "weight": 10}]}
        ],
        "consumers": [{"name": "team-a", "key_sha256": hex::encode(Sha256::digest(KEY))}]
    })
}

/// `config()` with the top-level sections of `extra` added (or replaced).
pub fn config_with(extra: Value) -> Value {
    let mut c = config();
    if let (Some(o), Value::Object(e)) = (c.as_object_mut(), extra) {
        o.extend(e);
    }
    c
}

/// A host with these request headers and the providers' keys.
pub fn host(headers: &[(&str, &str)]) -> FakeHost {
    let mut h = FakeHost::new(headers);
    h.env = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    h
}

/// The next request's host: the same VM, so the same shared data.
pub fn next(prev: &FakeHost, headers: &[(&str, &str)]) -> FakeHost {
    let mut h = host(headers);
    h.shared = prev.shared.clone();
    h
}

pub fn vm(h: &FakeHost, cfg: &Value) -> Vm {
    Vm::configure(h, cfg.to_string().as_bytes()).unwrap().0
}

/// An OpenAI client's POST to `path` with team-a's key (and `extra` headers).
pub fn post(
    path: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway"),
        ("content-type", "application/json"),
        ("authorization", "Bearer sk-team-a"),
        ("x-request-id", "req-1"),
        ("accept-encoding", "gzip"),
    ];
    h.extend_from_slice(extra);
    h
}

pub fn chat() -> Vec<(&'static str, &'static str)> {
    post("/v1/chat/completions", &[])
}

/// An Anthropic client's POST to `/v1/messages` with team-a's key.
pub fn messages() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "POST"),
        (":path", "/v1/messages"),
        (":authority", "gateway"),
        ("content-type", "application/json"),
        ("x-api-key", "sk-team-a"),
        ("anthropic-version", "2023-06-01"),
        ("x-request-id", "req-1"),
    ]
}

/// A one-message chat request for `model` (8 prompt tokens as the gateway counts them).
pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
}

/// The request headers, then the whole body in one piece: what its end returned.
pub fn send_raw(ex: &mut Exchange, h: &mut FakeHost, body: &[u8]) -> Step {
    h.request_body = body.to_vec();
    assert_eq!(ex.on_request_headers(h, false), Step::Pause);
    ex.on_request_body(h, body.len(), true)
}

pub fn send(ex: &mut Exchange, h: &mut FakeHost, body: &Value) -> Step {
    send_raw(ex, h, body.to_string().as_bytes())
}

/// The provider's answer passes: headers, then the body in one piece.
pub fn answer(
    ex: &mut Exchange,
    h: &mut FakeHost,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    h.respond(status, headers, body);
    assert_eq!(ex.on_response_headers(h), Step::Continue);
    let n = h.response_body.len();
    assert_eq!(ex.on_response_body(h, n, true), Step::Continue);
}

pub const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
pub const SSE: [(&str, &str); 1] = [("content-type", "text/event-stream")];

/// A whole request: admitted and forwarded, answered 200 with `response` (JSON), finished.
pub fn run(vm: &Vm, h: &mut FakeHost, body: &Value, response: &[u8]) -> Exchange {
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, h, body), Step::Continue);
    answer(&mut ex, h, 200, &JSON, response);
    ex.finish(h);
    ex
}

/// An OpenAI `chat.completion` saying `text`, with usage 8 + 5.
pub fn completion(text: &str) -> Vec<u8> {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}})
    .to_string()
    .into_bytes()
}

fn chunk(delta: Value, finish: Value) -> String {
    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                   "model": "gpt-4o-mini-2024-07-18",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// The usage-only chunk of a stream (usage 8 + 5).
pub fn usage_event() -> String {
    let u = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                   "model": "gpt-4o-mini-2024-07-18", "choices": [],
                   "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}});
    format!("data: {u}\n\n")
}

/// A chat stream saying `text`, with the usage chunk when `usage`, ended by `[DONE]` when `done`.
pub fn stream(text: &str, usage: bool, done: bool) -> Vec<u8> {
    let mut s = chunk(json!({"role": "assistant", "content": text}), Value::Null);
    s += &chunk(json!({}), json!("stop"));
    if usage {
        s += &usage_event();
    }
    if done {
        s += "data: [DONE]\n\n";
    }
    s.into_bytes()
}

/// The name of the requests counter with these labels.
pub fn requests_metric(model: &str, provider: &str, consumer: &str, outcome: &str) -> String {
    stat_name(
        metric::REQUESTS,
        &[
            (metric::TAG_MODEL, model),
            (metric::TAG_PROVIDER, provider),
            (metric::TAG_CONSUMER, consumer),
            (metric::TAG_OUTCOME, outcome),
        ],
    )
}

/// Every update of the requests counter, by name.
pub fn counted(h: &FakeHost) -> Vec<String> {
    let prefix = format!("{}.", metric::REQUESTS);
    h.updates
        .iter()
        .filter(|u| u.name.starts_with(&prefix))
        .map(|u| u.name.clone())
        .collect()
}

/// A JSON body as a value (`Null` when it is not JSON).
pub fn parsed(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

/// The reply a step carries.
pub fn reply(step: Step) -> crate::flow::LocalReply {
    match step {
        Step::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// A header of a local reply.
pub fn header<'a>(r: &'a crate::flow::LocalReply, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// The spans of every post to the trace collector's cluster `otel` so far.
pub fn posted_spans(h: &FakeHost) -> Vec<Value> {
    h.callouts
        .iter()
        .filter(|c| c.cluster == "otel")
        .flat_map(|c| {
            assert_eq!(c.path, "/v1/traces");
            parsed(&c.body)["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// A span event's attribute `key`, as OTLP/JSON writes it.
pub fn event_attr(event: &Value, key: &str) -> Option<Value> {
    event["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
}
