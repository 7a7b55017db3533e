//! Failover chains in real Envoy: the gateway filter sends the request to a composite cluster,
//! Envoy's retry policy makes attempt n go to its n-th provider, and the same filter running
//! as an upstream filter adapts each attempt (path, key, model, body format). Providers that
//! are down are fake-provider instances forced to fail (503, 429, slow) or a port nobody
//! listens on.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::answers::*;
use support::*;

const CLAUDE_KEY: &str = "sk-ant-failover-key";

/// The fakes behind the providers; dropped with the test.
struct Providers {
    ok: Fake,
    down: Fake,
    limited: Fake,
    slow: Fake,
    started: Fake,
    /// Answers 200, then an in-band error as its first event.
    in_band: Fake,
    /// Answers 200, then nothing for 5 s.
    stalled: Fake,
    /// Answers 200, five events (some output), then an in-band error.
    mid_stream: Fake,
    dead_port: u16,
}

fn providers() -> Providers {
    Providers {
        ok: Fake::start(None),
        down: Fake::start_with(None, &[("x-fake-status", "503")]),
        limited: Fake::start_with(None, &[("x-fake-status", "429")]),
        slow: Fake::start_with(None, &[("x-fake-delay-ms", "5000")]),
        started: Fake::start_with(None, &[("x-fake-abort-after-events", "3")]),
        in_band: Fake::start_with(
            None,
            &[
                ("x-fake-stream-error-after-events", "0"),
                ("x-fake-error-in-200", "1"),
            ],
        ),
        stalled: Fake::start_with(None, &[("x-fake-first-event-delay-ms", "5000")]),
        mid_stream: Fake::start_with(None, &[("x-fake-stream-error-after-events", "5")]),
        dead_port: free_port(),
    }
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
           "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
}

fn gateway(p: &Providers) -> Gateway {
    let config = json!({
        "providers": {
            "primary-503": {"cluster": "p503", "api_key_env": "OPENAI_API_KEY"},
            "primary-429": {"cluster": "p429", "api_key_env": "OPENAI_API_KEY"},
            "primary-slow": {"cluster": "pslow", "api_key_env": "OPENAI_API_KEY"},
            "primary-dead": {"cluster": "pdead", "api_key_env": "OPENAI_API_KEY"},
            "primary-started": {"cluster": "pstarted", "api_key_env": "OPENAI_API_KEY"},
            "primary-in-band": {"cluster": "pinband", "api_key_env": "OPENAI_API_KEY"},
            "claude-in-band": {"cluster": "pinband", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
            "primary-stalled": {"cluster": "pstalled", "api_key_env": "OPENAI_API_KEY"},
            "primary-mid": {"cluster": "pmid", "api_key_env": "OPENAI_API_KEY"},
            "claude-mid": {"cluster": "pmid", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
            "azure": {"cluster": "azure", "format": "azure", "api_key_env": "BACKUP_API_KEY",
                      "models": {"gpt-4o": "my-gpt4o"}},
            "claude": {"cluster": "claude", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"}
        },
        "routes": [
            {"match": {"model": "gpt-4o"}, "to": {"provider": "primary-503"},
             "fallback": {"cluster": "failover-a", "to": [{"provider": "azure"},
                                                          {"provider": "claude", "model": "claude-sonnet-4-5"}]}},
            {"match": {"model": "dead-then-claude"}, "to": {"provider": "primary-dead"},
             "fallback": {"cluster": "failover-b", "to": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}},
            {"match": {"model": "slow-then-azure"}, "to": {"provider": "primary-slow"},
             "fallback": {"cluster": "failover-c", "to": [{"provider": "azure", "model": "gpt-4o"}]}},
            {"match": {"model": "limited-then-claude"}, "to": {"provider": "primary-429"},
             "fallback": {"cluster": "failover-d", "to": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}},
            {"match": {"model": "all-down"}, "to": {"provider": "primary-dead"},
             "fallback": {"cluster": "failover-e", "to": [{"provider": "primary-429"}, {"provider": "primary-503"}]}},
            {"match": {"model": "started"}, "to": {"provider": "primary-started"},
             "fallback": {"cluster": "failover-f", "to": [{"provider": "azure", "model": "gpt-4o"}]}},
            {"match": {"model": "in-band-then-azure"}, "to": {"provider": "primary-in-band"},
             "fallback": {"cluster": "failover-g", "to": [{"provider": "azure", "model": "gpt-4o"}]}},
            {"match": {"model": "claude-in-band-then-azure"}, "to": {"provider": "claude-in-band", "model": "claude-sonnet-4-5"},
             "fallback": {"cluster": "failover-h", "to": [{"provider": "azure", "model": "gpt-4o"}]}},
            {"match": {"model": "stalled-then-claude"}, "to": {"provider": "primary-stalled"},
             "fallback": {"cluster": "failover-i", "to": [{"provider": "claude", "model": "claude-sonnet-4-5"}],
                          "first_event_timeout_ms": 300}},
            {"match": {"model": "mid-then-azure"}, "to": {"provider": "primary-mid"},
             "fallback": {"cluster": "failover-j", "to": [{"provider": "azure", "model": "gpt-4o"}]}},
            {"match": {"model": "claude-mid-then-azure"}, "to": {"provider": "claude-mid", "model": "claude-sonnet-4-5"},
             "fallback": {"cluster": "failover-k", "to": [{"provider": "azure", "model": "gpt-4o"}]}}
        ],
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}]
    });
    let chains: [(&str, &[&str]); 11] = [
        ("failover-a", &["p503", "azure", "claude"]),
        ("failover-b", &["pdead", "claude"]),
        ("failover-c", &["pslow", "azure"]),
        ("failover-d", &["p429", "claude"]),
        ("failover-e", &["pdead", "p429", "p503"]),
        ("failover-f", &["pstarted", "azure"]),
        ("failover-g", &["pinband", "azure"]),
        ("failover-h", &["pinband", "azure"]),
        ("failover-i", &["pstalled", "claude"]),
        ("failover-j", &["pmid", "azure"]),
        ("failover-k", &["pmid", "azure"]),
    ];
    let ports = [
        ("p503", p.down.port),
        ("p429", p.limited.port),
        ("pslow", p.slow.port),
        ("pdead", p.dead_port),
        ("pstarted", p.started.port),
        ("pinband", p.in_band.port),
        ("pstalled", p.stalled.port),
        ("pmid", p.mid_stream.port),
        ("azure", p.ok.port),
        ("claude", p.ok.port),
    ];
    // primary-429 answers every request 429 and is asked again by the next test: cool-down
    // (tests/cooldown.rs) would pass it over.
    let mut opts = Options {
        plugin_config: Some(without_cooldown(config)),
        ..Options::default()
    };
    opts.edit = Some(Box::new(move |b: &mut Value| {
        let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        // A short per-try timeout, so the slow provider times out quickly.
        let route = &mut hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"];
        assert!(
            route.get("retry_policy").is_some(),
            "the failover route comes first"
        );
        route["retry_policy"]["per_try_timeout"] = "1s".into();
        let clusters = b["static_resources"]["clusters"].as_array_mut().unwrap();
        // The shipped chain cluster is the template for the test's chains.
        let template = clusters
            .iter()
            .find(|c| c["name"] == "failover-openai-backup")
            .cloned()
            .expect("gateway.yaml ships a failover cluster");
        for (name, port) in ports {
            clusters.push(static_cluster(name, port));
        }
        for (name, members) in chains {
            let mut c = template.clone();
            c["name"] = name.into();
            c["cluster_type"]["typed_config"]["clusters"] =
                members.iter().map(|m| json!({"name": m})).collect();
            let wasm = &mut c["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0]
                ["typed_config"]["config"];
            wasm["vm_config"]["environment_variables"]["host_env_keys"]
                .as_array_mut()
                .unwrap()
                .push("ANTHROPIC_API_KEY".into());
            clusters.push(c);
        }
    }));
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(&p.ok, opts)
}

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 50,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hello"}]})
}

fn chunks(r: &Resp) -> Vec<Value> {
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The access-log line of the request whose `x-request-id` the response echoed... the
/// gateway has one client at a time here, so the last line is the request's.
fn last_log(gw: &Gateway, n: usize) -> Value {
    gw.access_log(n).pop().expect("an access-log line")
}

#[test]
fn a_failing_provider_fails_over_and_each_attempt_is_adapted() {
    let p = providers();
    let gw = gateway(&p);
    let mut logs = 0;

    // Primary answers 503: Azure serves, with its deployment path, its key and its model.
    let r = chat(&gw, &ask("gpt-4o", false), &[]);
    logs += 1;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-fake-received-path"),
        Some("/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21")
    );
    assert_eq!(
        r.header("x-fake-received-api-key"),
        Some(fingerprint(BACKUP_KEY).as_str())
    );
    // The first attempt's bearer key did not leak into the second.
    assert_eq!(r.header("x-fake-received-authorization").unwrap_or(""), "");
    assert_eq!(r.header("x-fake-received-model"), Some("my-gpt4o"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let log = last_log(&gw, logs);
    assert_eq!(log["provider"], "azure", "{log}");
    assert_eq!(log["attempts"], "2");
    assert_eq!(log["failover"], "primary-503:503");
    assert_eq!(log["status"], 200);
    assert_eq!(log["outcome"], "ok");
    assert_eq!(log["upstream_cluster"], "failover-a");

    // The same as a stream: nothing of the failed attempt reaches the client.
    let r = chat(&gw, &ask("gpt-4o", true), &[]);
    logs += 1;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let c = chunks(&r);
    assert!(c.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert!(
        c.iter().all(|c| c.get("usage").is_none_or(Value::is_null)),
        "not asked for: {}",
        r.text()
    );
    assert!(!content(&c).is_empty());
    let log = last_log(&gw, logs);
    assert_eq!(log["provider"], "azure", "{log}");
    assert_eq!(log["failover"], "primary-503:503");
    assert_eq!(
        log["usage_estimated"], "false",
        "usage read from the stream"
    );

    // Refused connection: the Anthropic provider serves, translated to OpenAI's format.
    let r = chat(&gw, &ask("dead-then-claude", false), &[]);
    logs += 1;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fake-received-path"), Some("/v1/messages"));
    assert_eq!(
        r.header("x-fake-received-api-key"),
        Some(fingerprint(CLAUDE_KEY).as_str())
    );
    assert_eq!(
        r.header("x-fake-received-anthropic-version"),
        Some("2023-06-01")
    );
    assert_eq!(r.header("x-fake-received-model"), Some("claude-sonnet-4-5"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let log = last_log(&gw, logs);
    assert_eq!(log["provider"], "claude", "{log}");
    assert_eq!(log["failover"], "primary-dead:connect_failure");

    let mut body = ask("dead-then-claude", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = chat(&gw, &body, &[("x-fake-completion-tokens", "7")]);
    logs += 1;
    let c = chunks(&r);
    assert!(c.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(c.last().unwrap()["usage"]["completion_tokens"], 7);
    assert_eq!(last_log(&gw, logs)["completion_tokens"], "7");

    // No answer within the per-try timeout (1 s; the provider takes 5 s): Azure serves.
    let t0 = Instant::now();
    let r = chat(&gw, &ask("slow-then-azure", false), &[]);
    logs += 1;
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(4000),
        "{took:?}"
    );
    assert_eq!(r.header("x-fake-received-model"), Some("my-gpt4o"));
    let log = last_log(&gw, logs);
    assert_eq!(log["provider"], "azure", "{log}");
    assert_eq!(log["failover"], "primary-slow:timeout");

    // 429 from the primary fails over too.
    let r = chat(&gw, &ask("limited-then-claude", false), &[]);
    logs += 1;
    assert_eq!(r.status, 200, "{}", r.text());
    let log = last_log(&gw, logs);
    assert_eq!(log["provider"], "claude", "{log}");
    assert_eq!(log["failover"], "primary-429:429");

    // A stream that has started is never retried: the client gets the one answer it began.
    let mut r = agent()
        .post(&gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {DEMO_KEY}"))
        .send(ask("started", true).to_string())
        .unwrap();
    logs += 1;
    assert_eq!(r.status().as_u16(), 200);
    let mut text = String::new();
    // The body ends in an error (the connection was reset); keep what arrived.
    let _ = std::io::Read::read_to_string(&mut r.body_mut().as_reader(), &mut text);
    assert!(
        !text.contains("[DONE]"),
        "cut short by the provider: {text}"
    );
    assert!(text.contains("chat.completion.chunk"), "{text}");
    let log = last_log(&gw, logs);
    assert_eq!(log["provider"], "primary-started", "{log}");
    assert_eq!(log["attempts"], "1");
    assert_eq!(log["outcome"], "stream_incomplete");

    // Metrics say who failed over and why.
    let prom = gw.prometheus();
    for (provider, reason, n) in [
        ("primary-503", "503", 2),
        ("primary-dead", "connect_failure", 2),
        ("primary-slow", "timeout", 1),
        ("primary-429", "429", 1),
    ] {
        let line = format!(
            "llm_gateway_failovers_total{{gen_ai_provider_name=\"{provider}\",reason=\"{reason}\"}} {n}"
        );
        assert!(prom.contains(&line), "{line} missing:\n{prom}");
    }
    let served =
        "llm_gateway_requests_total{gen_ai_request_model=\"gpt-4o\",gen_ai_provider_name=\"azure\"";
    assert!(prom.contains(served), "{prom}");
}

/// A provider that answers 200 and then an error as its first event, or nothing: the attempt
/// is held until its first event, so Envoy retries it on the next provider and the client, of
/// each API, gets that one's answer alone.
#[test]
fn a_200_whose_first_event_is_an_error_or_late_fails_over_unseen() {
    let p = providers();
    let gw = gateway(&p);
    let mut logs = 0;
    for api in APIS {
        for (model, failed, served) in [
            (
                "in-band-then-azure",
                "primary-in-band:in_band_error",
                "azure",
            ),
            (
                "claude-in-band-then-azure",
                "claude-in-band:in_band_error",
                "azure",
            ),
            (
                "stalled-then-claude",
                "primary-stalled:first_event_timeout",
                "claude",
            ),
        ] {
            let case = format!("{api:?}, {model}");
            let started = Instant::now();
            let r = api.send(&gw, &api.ask(model, "Hello", true, false), &[]);
            let took = started.elapsed();
            logs += 1;
            let answer = api.read(&r, true);
            assert!(!answer.text.is_empty(), "{case}: {}", r.text());
            for trace in [
                "\"error\":{",
                "overloaded",
                "server_error",
                "response.failed",
            ] {
                assert!(
                    !r.text().contains(trace),
                    "{case}: nothing of the failed attempt: {}",
                    r.text()
                );
            }
            let log = last_log(&gw, logs);
            assert_eq!(log["provider"], served, "{case}: {log}");
            assert_eq!(log["attempts"], "2", "{case}: {log}");
            assert_eq!(log["failover"], failed, "{case}: {log}");
            assert_eq!(
                (&log["status"], &log["outcome"]),
                (&json!(200), &json!("ok")),
                "{case}: {log}"
            );
            assert!(
                log["completion_tokens"].as_str().is_some_and(|t| t != "0"),
                "{case}: {log}"
            );
            if model.starts_with("stalled") {
                // The chain's first_event_timeout_ms (300), not the route's per-try timeout.
                assert!(
                    took >= Duration::from_millis(280) && took < Duration::from_millis(900),
                    "{case}: {took:?}"
                );
            }
        }
    }
    // A JSON answer is held whole: a 200 whose body is an error object fails over too.
    let r = chat(&gw, &ask("in-band-then-azure", false), &[]);
    logs += 1;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "chat.completion");
    let log = last_log(&gw, logs);
    assert_eq!(log["failover"], "primary-in-band:in_band_error", "{log}");
    let prom = gw.prometheus();
    for (provider, reason, n) in [
        ("primary-in-band", "in_band_error", 4),
        ("claude-in-band", "in_band_error", 3),
        ("primary-stalled", "first_event_timeout", 3),
    ] {
        let line = format!(
            "llm_gateway_failovers_total{{gen_ai_provider_name=\"{provider}\",reason=\"{reason}\"}} {n}"
        );
        assert!(prom.contains(&line), "{line} missing:\n{prom}");
    }
}

/// The official SDKs' streaming APIs (openai chat and Responses streams, anthropic
/// `messages.stream`) see one clean stream when the first provider fails in-band or stalls.
#[test]
fn the_sdks_streaming_apis_see_one_clean_stream_on_failover() {
    let p = providers();
    let gw = gateway(&p);
    let chains = [
        "in-band-then-azure",
        "claude-in-band-then-azure",
        "stalled-then-claude",
    ];
    let out = run_sdk_script_with(&gw, "failover_streams.py", &chains, "all clean");
    for model in chains {
        assert!(out.contains(&format!("clean {model}")), "{out}");
    }
    // 3 chains × 3 APIs, each failed over once.
    let log = gw.access_log(9);
    assert_eq!(log.len(), 9, "{log:?}");
    for l in &log {
        assert_eq!(l["attempts"], "2", "{l}");
        assert_eq!(l["outcome"], "ok", "{l}");
    }
}

/// A stream that fails in-band after its first output is not replayed (the client already has
/// part of it): the client gets an error event in its own API's format, ending the stream as
/// that API does, and the request is counted once, for the provider that served it.
#[test]
fn a_stream_that_fails_after_its_first_output_ends_in_a_clean_error_counted_once() {
    let p = providers();
    let gw = gateway(&p);
    let requests = |provider: &str| {
        prom_sum(
            &gw.prometheus(),
            "llm_gateway_requests_total",
            &[("gen_ai_provider_name", provider)],
        )
    };
    let mut logs = 0;
    for api in APIS {
        for (model, provider) in [
            ("mid-then-azure", "primary-mid"),
            ("claude-mid-then-azure", "claude-mid"),
        ] {
            let case = format!("{api:?}, {model}");
            let before = requests(provider);
            let r = api.send(&gw, &api.ask(model, "Hello", true, false), &[]);
            logs += 1;
            assert_eq!(r.status, 200, "{case}: {}", r.text());
            let text = r.text();
            let error = stream_error(api, &text, &case);
            assert!(!error.is_null(), "{case}: {text}");
            assert!(
                error["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{case}: {error}"
            );
            assert!(
                text.contains("quick"),
                "{case}: the output before the error: {text}"
            );
            let log = last_log(&gw, logs);
            assert_eq!(log["provider"], provider, "{case}: {log}");
            assert_eq!(log["attempts"], "1", "{case}: {log}");
            assert_eq!(log["failover"], Value::Null, "{case}: {log}");
            assert_eq!(log["outcome"], "stream_error", "{case}: {log}");
            assert_eq!(requests(provider), before + 1.0, "{case}: counted once");
        }
    }
}

#[test]
fn when_every_provider_fails_the_client_gets_one_clear_503() {
    let p = providers();
    let gw = gateway(&p);
    for (i, stream) in [false, true].into_iter().enumerate() {
        let r = chat(&gw, &ask("all-down", stream), &[]);
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let v = r.json();
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "providers_unavailable");
        assert_eq!(
            v["error"]["message"],
            "All 3 providers failed (primary-dead: connection failed; primary-429: HTTP 429; primary-503: HTTP 503). Please retry later."
        );
        let log = last_log(&gw, i + 1);
        assert_eq!(log["status"], 503);
        assert_eq!(log["outcome"], "providers_unavailable", "{log}");
        assert_eq!(log["attempts"], "3");
        assert_eq!(
            log["failover"],
            "primary-dead:connect_failure,primary-429:429"
        );
        assert_eq!(log["total_tokens"], Value::Null, "nothing billed: {log}");
    }
}

/// An Anthropic client (the Messages API) on a failover route: translated to OpenAI's format
/// by the gateway filter, adapted per attempt by the upstream filter, and answered in its own
/// API's shape, errors included.
#[test]
fn anthropic_clients_fail_over_too() {
    let p = providers();
    let gw = gateway(&p);
    let post_messages = |model: &str, stream: bool| {
        post(
            &gw.url("/v1/messages"),
            &[
                ("content-type", "application/json"),
                ("x-api-key", DEMO_KEY),
                ("anthropic-version", "2023-06-01"),
            ],
            json!({"model": model, "max_tokens": 50, "stream": stream,
                   "messages": [{"role": "user", "content": "Hello"}]})
            .to_string()
            .as_bytes(),
        )
    };
    // 503 from the primary, then Azure; and a refused primary, then Claude (twice translated).
    for (i, (model, served)) in [("gpt-4o", "azure"), ("dead-then-claude", "claude")]
        .into_iter()
        .enumerate()
    {
        let r = post_messages(model, false);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["content"][0]["type"], "text");
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
        let r = post_messages(model, true);
        let text = r.text();
        assert!(text.starts_with("event: message_start"), "{text}");
        assert!(
            text.trim_end()
                .ends_with(r#"data: {"type":"message_stop"}"#),
            "{text}"
        );
        let log = gw.access_log(2 * (i + 1));
        let last = log.last().unwrap();
        assert_eq!(last["provider"], served, "{last}");
        assert_eq!(last["endpoint"], "messages");
    }
    let r = post_messages("all-down", false);
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("All 3 providers failed"));
}
