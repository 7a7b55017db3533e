//! A provider that is down or too slow, in real Envoy: the client gets an error in its own API's
//! format (OpenAI error JSON, or Anthropic's for /v1/messages clients) with the status that fits
//! (503 for a refused connection, 504 for a timeout), never Envoy's plain text; and the request
//! is recorded as an upstream error with no tokens.

mod support;

use serde_json::{json, Value};
use support::*;

const CLAUDE_KEY: &str = "sk-ant-outage-test";

fn gateway(fake: &Fake, dead_port: u16) -> Gateway {
    let config = json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "down": {"cluster": "dead", "api_key_env": "OPENAI_API_KEY"},
            "claude-down": {"cluster": "dead", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"}
        },
        "routes": [
            {"match": {"model": "gpt-down"}, "to": {"provider": "down"}},
            {"match": {"model": "claude-down"}, "to": {"provider": "claude-down"}}
        ],
        "default": {"to": {"provider": "openai"}},
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}]
    });
    let mut opts = Options {
        plugin_config: Some(config),
        workers: 1,
        ..Options::default()
    };
    opts.edit = Some(Box::new(move |b: &mut Value| {
        let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        // A bounded wait for the provider's answer, so the slow one times out.
        for r in hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array_mut()
            .unwrap()
        {
            if r["route"]["cluster_header"].is_string() && r["route"].get("retry_policy").is_none()
            {
                r["route"]["timeout"] = "1s".into();
            }
        }
        b["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap()
            .push(http_cluster("dead", dead_port));
    }));
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(fake, opts)
}

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 20,
           "messages": [{"role": "user", "content": "Hello"}]})
}

fn is_json(r: &Resp) -> bool {
    r.header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
}

fn assert_openai_error(what: &str, r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(
        is_json(r),
        "{what}: {:?} {}",
        r.header("content-type"),
        r.text()
    );
    let v = r.json();
    assert_eq!(v["error"]["type"], "server_error", "{what}: {v}");
    assert_eq!(v["error"]["code"], code, "{what}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

fn assert_anthropic_error(what: &str, r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(
        is_json(r),
        "{what}: {:?} {}",
        r.header("content-type"),
        r.text()
    );
    let v = r.json();
    assert_eq!(v["type"], "error", "{what}: {v}");
    assert_eq!(v["error"]["type"], "api_error", "{what}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[test]
fn a_provider_that_is_down_gets_an_error_in_the_clients_format() {
    let fake = Fake::start(None);
    let gw = gateway(&fake, free_port());

    // OpenAI clients: JSON and stream, a refused connection.
    for stream in [false, true] {
        let r = chat(&gw, &ask("gpt-down", stream), &[]);
        assert_openai_error(&format!("stream={stream}"), &r, 503, "provider_unavailable");
    }
    // An OpenAI client to an Anthropic-format provider that is down.
    let r = chat(&gw, &ask("claude-down", false), &[]);
    assert_openai_error("anthropic provider", &r, 503, "provider_unavailable");
    // A provider too slow for the route's timeout.
    let r = chat(
        &gw,
        &ask("gpt-4o-mini", false),
        &[("x-fake-delay-ms", "3000")],
    );
    assert_openai_error("timeout", &r, 504, "provider_timeout");

    // Anthropic clients, to an OpenAI-format and an Anthropic-format provider that is down, and
    // as a stream.
    let messages = |model: &str, stream: bool| {
        post(
            &gw.url("/v1/messages"),
            &[
                ("content-type", "application/json"),
                ("x-api-key", DEMO_KEY),
                ("anthropic-version", "2023-06-01"),
            ],
            ask(model, stream).to_string().as_bytes(),
        )
    };
    assert_anthropic_error("messages to openai", &messages("gpt-down", false), 503);
    assert_anthropic_error(
        "messages to anthropic",
        &messages("claude-down", false),
        503,
    );
    assert_anthropic_error("messages stream", &messages("claude-down", true), 503);

    // A provider's own error still passes as the provider sent it.
    let r = chat(&gw, &ask("gpt-4o-mini", false), &[("x-fake-status", "500")]);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.header("x-fake-received-model").is_some(),
        "the provider's answer"
    );

    // Recorded as upstream errors, with nothing billed.
    let log = gw.access_log(8);
    assert_eq!(log.len(), 8, "{log:?}");
    for l in &log[..7] {
        assert_eq!(l["outcome"], "upstream_error", "{l}");
        for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert_eq!(l[k], Value::Null, "nothing billed: {l}");
        }
    }
    assert_eq!(log[3]["status"], 504, "{}", log[3]);
    let prom = gw.prometheus();
    let errors = prom_sum(
        &prom,
        "llm_gateway_requests_total",
        &[("outcome", "upstream_error")],
    );
    assert_eq!(errors, 8.0, "{prom}");
    for model in ["gpt-down", "claude-down"] {
        let tokens = prom_sum(
            &prom,
            "llm_gateway_tokens_total",
            &[("gen_ai_request_model", model)],
        );
        assert_eq!(tokens, 0.0, "{model}: {prom}");
    }
}
