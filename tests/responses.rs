//! The OpenAI Responses API in real Envoy: passed through to a provider that serves it (byte
//! for byte, JSON and stream), translated for a chat-only provider and for an Anthropic one
//! (JSON, stream, function-call round trips), usage in the metrics, usage events and access log
//! equal to the provider's on each path, the refusals of the translated path, the counting
//! endpoints, and the openai Python SDK.

mod support;

use serde_json::{json, Value};
use support::usage::*;
use support::*;

const CLAUDE_KEY: &str = "sk-ant-test-key";

fn config() -> Value {
    json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "chat-only": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY", "responses": "translate"},
            "claude": {"cluster": "backup", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"}
        },
        "routes": [
            {"name": "claude", "match": {"model": "claude-*"}, "to": {"provider": "claude"}},
            {"name": "chat-only", "match": {"model": "llama-3"}, "to": {"provider": "chat-only", "model": "gpt-4o-mini"}},
            {"name": "stored", "match": {"path": "/v1/responses/*"}, "to": {"provider": "openai"}}
        ],
        "default": {"to": {"provider": "openai"}},
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}],
        "tokenizer": {"preload": ["o200k_base"]}
    })
}

fn gateway(fake: &Fake) -> Gateway {
    let mut opts = Options {
        plugin_config: Some(config()),
        ..Options::default()
    };
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(fake, opts)
}

fn auth() -> String {
    format!("Bearer {DEMO_KEY}")
}

fn responses(gw: &Gateway, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let auth = auth();
    let mut h: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("authorization", &auth),
    ];
    h.extend_from_slice(extra);
    post(&gw.url("/v1/responses"), &h, body.to_string().as_bytes())
}

/// The same request sent to the fake directly, with the provider's key.
fn direct(fake: &Fake, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let auth = format!("Bearer {OPENAI_KEY}");
    let mut h: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("authorization", &auth),
    ];
    h.extend_from_slice(extra);
    post(
        &format!("http://127.0.0.1:{}/v1/responses", fake.port),
        &h,
        body.to_string().as_bytes(),
    )
}

fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}")))
        .collect()
}

/// The text with `created_at` (seconds, which may tick between two answers) blanked.
fn timeless(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\"created_at\":") {
        let (head, tail) = rest.split_at(i + "\"created_at\":".len());
        out.push_str(head);
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('0');
    }
    out.push_str(rest);
    out
}

fn last_log(gw: &Gateway, n: usize) -> Value {
    gw.access_log(n).pop().expect("an access log line")
}

#[test]
fn responses_pass_through_byte_for_byte_with_usage_accounted() {
    let fake = Fake::start(Some(OPENAI_KEY));
    let gw = gateway(&fake);
    let body = json!({"model": "gpt-4o-mini", "input": "Hello there", "instructions": "Be brief."});
    let id = [("x-fake-id", "pass1")];
    let r = responses(&gw, &body, &id);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fake-received-path"), Some("/v1/responses"));
    let d = direct(&fake, &body, &id);
    assert_eq!(
        timeless(&r.text()),
        timeless(&d.text()),
        "the answer passes unchanged"
    );
    let v = r.json();
    assert_eq!(v["object"], "response");
    let log = last_log(&gw, 1);
    assert_eq!(log["endpoint"], "responses");
    assert_eq!(log["provider"], "openai");
    assert_eq!(log["outcome"], "ok");
    let u = &v["usage"];
    assert_eq!(log["prompt_tokens"], u["input_tokens"].to_string());
    assert_eq!(log["completion_tokens"], u["output_tokens"].to_string());
    assert_eq!(log["total_tokens"], u["total_tokens"].to_string());

    // A stream: unchanged too, its usage read from response.completed.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = responses(&gw, &sbody, &id);
    assert_eq!(r.status, 200);
    let d = direct(&fake, &sbody, &id);
    assert_eq!(timeless(&r.text()), timeless(&d.text()));
    let evs = events(&r.text());
    let done = evs.last().expect("events");
    assert_eq!(done["type"], "response.completed");
    let log = last_log(&gw, 2);
    assert_eq!(log["stream"], "true");
    assert_eq!(
        log["prompt_tokens"],
        done["response"]["usage"]["input_tokens"].to_string()
    );
    assert_eq!(
        log["completion_tokens"],
        done["response"]["usage"]["output_tokens"].to_string()
    );
    assert_eq!(log["usage_estimated"], "false");
}

/// What the fake is told to use: 5 words, 3 cached input tokens (Anthropic: cache reads), 2
/// reasoning tokens (OpenAI modes only).
const USAGE_CONTROLS: [(&str, &str); 4] = [
    ("x-fake-completion-tokens", "5"),
    ("x-fake-cached-tokens", "3"),
    ("x-fake-cache-read-tokens", "3"),
    ("x-fake-reasoning-tokens", "2"),
];

/// The provider's figures, from the fake's own record: the prompt it counted (its
/// `x-fake-prompt-tokens` echo, cache reads included in Anthropic mode) and what
/// [`USAGE_CONTROLS`] make it report (its OpenAI modes count reasoning in the output; its
/// Anthropic mode has no reasoning).
fn provider_figures(r: &Resp, anthropic: bool) -> Figures {
    Figures {
        input: r.num("x-fake-prompt-tokens"),
        output: if anthropic { 5 } else { 5 + 2 },
        cached: 3,
        reasoning: if anthropic { 0 } else { 2 },
    }
}

/// The figures of a Responses `usage` object.
fn usage_figures(u: &Value) -> Figures {
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("no figure in {u}"));
    Figures {
        input: n(&u["input_tokens"]),
        output: n(&u["output_tokens"]),
        cached: n(&u["input_tokens_details"]["cached_tokens"]),
        reasoning: n(&u["output_tokens_details"]["reasoning_tokens"]),
    }
}

/// The test gateway, exporting usage events (JSON format) to `sink` as soon as each is queued.
fn exporting(fake: &Fake, sink: &Collector) -> Gateway {
    let mut c = config();
    c["usage_export"] =
        json!({"cluster": "usage", "format": "json", "batch_size": 1, "flush_interval_ms": 20});
    let port = sink.port;
    let mut opts = Options {
        plugin_config: Some(c),
        edit: Some(Box::new(move |b: &mut Value| {
            b["static_resources"]["clusters"]
                .as_array_mut()
                .expect("clusters")
                .push(http_cluster("usage", port));
        })),
        ..Options::default()
    };
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(fake, opts)
}

#[test]
fn usage_in_metrics_events_and_access_log_is_the_providers_on_every_path() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let gw = exporting(&fake, &sink);
    for (model, provider, path) in [
        ("gpt-4o-mini", "openai", "/v1/responses"),
        ("llama-3", "chat-only", "/v1/chat/completions"),
        ("claude-sonnet-4-5", "claude", "/v1/messages"),
    ] {
        for stream in [false, true] {
            let case = format!("{provider}, stream {stream}");
            let id = format!("usage-{provider}-{stream}");
            let body = json!({"model": model, "input": "Hello there", "instructions": "Be brief.",
                              "stream": stream});
            let before = metered(&gw, provider);
            let mut h = USAGE_CONTROLS.to_vec();
            h.push(("x-request-id", id.as_str()));
            let r = responses(&gw, &body, &h);
            assert_eq!(r.status, 200, "{case}: {}", r.text());
            assert_eq!(r.header("x-fake-received-path"), Some(path), "{case}");
            let want = provider_figures(&r, provider == "claude");
            // The answer the client got says the same (on the pass-through path it is the
            // provider's own).
            let usage = if stream {
                let evs = events(&r.text());
                let done = evs.last().expect("events").clone();
                assert_eq!(done["type"], "response.completed", "{case}");
                done["response"]["usage"].clone()
            } else {
                r.json()["usage"].clone()
            };
            assert_eq!(usage_figures(&usage), want, "{case}: the client's usage");

            // The usage event (queued after the metrics are written).
            let e = event_of(&sink, &id);
            assert_eq!(event_figures(&e), want, "{case}: the usage event {e}");
            assert_eq!(e["total_tokens"], want.input + want.output, "{case}");
            assert_eq!(e["endpoint"], "responses", "{case}");
            assert_eq!(e["stream"], stream, "{case}");
            assert_eq!(e["usage_estimated"], false, "{case}");

            // The metrics: this request's increments of its provider's token counters.
            assert_eq!(
                metered(&gw, provider).minus(before),
                want,
                "{case}: the token counters"
            );

            // The access log.
            let line = log_of(&gw, &id);
            assert_eq!(logged_figures(&line), want, "{case}: the access log {line}");
            assert_eq!(
                line["total_tokens"],
                (want.input + want.output).to_string(),
                "{case}"
            );
        }
    }
}

fn translated_text(gw: &Gateway, model: &str, path: &str) {
    let body = json!({"model": model, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}],
                      "instructions": "Be brief.", "max_output_tokens": 64});
    let id = format!("text-{model}");
    let r = responses(
        gw,
        &body,
        &[("x-fake-completion-tokens", "5"), ("x-request-id", &id)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fake-received-path"), Some(path));
    let v = r.json();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["usage"]["output_tokens"], 5);
    let log = log_of(gw, &id);
    assert_eq!(log["endpoint"], "responses");
    assert_eq!(log["prompt_tokens"], v["usage"]["input_tokens"].to_string());
    assert_eq!(log["completion_tokens"], "5");

    // The stream, event by event in the Responses sequence.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let id = format!("text-stream-{model}");
    let r = responses(
        gw,
        &sbody,
        &[("x-fake-completion-tokens", "5"), ("x-request-id", &id)],
    );
    assert_eq!(r.status, 200);
    let evs = events(&r.text());
    let types: Vec<&str> = evs.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert!(types.contains(&"response.output_text.delta"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let done = evs.last().expect("completed");
    assert_eq!(done["response"]["usage"]["output_tokens"], 5);
    let log = log_of(gw, &id);
    assert_eq!(log["completion_tokens"], "5");
    assert_eq!(log["usage_estimated"], "false");
}

#[test]
fn responses_are_translated_for_chat_only_and_anthropic_providers() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    translated_text(&gw, "llama-3", "/v1/chat/completions");
    translated_text(&gw, "claude-sonnet-4-5", "/v1/messages");
}

#[test]
fn function_calls_round_trip_on_the_translated_paths() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let tools = json!([{"type": "function", "name": "weather", "description": "Weather in a city",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}}]);
    for model in ["llama-3", "claude-sonnet-4-5"] {
        let body = json!({"model": model, "input": "Weather in Oslo?", "tools": tools});
        let r = responses(&gw, &body, &[("x-fake-tool-call", "weather")]);
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        let call = v["output"]
            .as_array()
            .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
            .unwrap_or_else(|| panic!("{model}: no function_call in {v}"))
            .clone();
        assert_eq!(call["name"], "weather");
        let next = json!({"model": model, "tools": tools, "input": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": call["call_id"], "name": "weather", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"}]});
        let r = responses(&gw, &next, &[]);
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        assert_eq!(v["output"][0]["type"], "message", "{model}: {v}");
    }
}

#[test]
fn the_translated_path_refuses_what_it_cannot_do() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    for (body, param) in [
        (
            json!({"model": "llama-3", "input": "Hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "input": "Hi", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
    ] {
        let r = responses(&gw, &body, &[]);
        assert_eq!(r.status, 400, "{}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{e}");
        assert_eq!(e["param"], param, "{e}");
    }
    // Bad bodies, on any route: OpenAI-format 400s.
    for body in [
        json!({"input": "Hi"}),
        json!({"model": "gpt-4o-mini", "input": 7}),
    ] {
        let r = responses(&gw, &body, &[]);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["error"]["message"].is_string());
    }
    // The pass-through route keeps previous_response_id (the provider stores responses).
    let r = responses(
        &gw,
        &json!({"model": "gpt-4o-mini", "input": "Hi", "previous_response_id": "resp_nope"}),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
}

#[test]
fn stored_responses_and_counting_endpoints() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let r = responses(&gw, &json!({"model": "gpt-4o-mini", "input": "Hello"}), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_string();
    let auth = auth();
    let h = [("authorization", auth.as_str())];
    let got = get_with(&gw.url(&format!("/v1/responses/{id}")), &h);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["id"], id.as_str());
    let items = get_with(&gw.url(&format!("/v1/responses/{id}/input_items")), &h);
    assert_eq!(items.status, 200, "{}", items.text());
    // With the provider's key, never the client's.
    assert_eq!(
        got.header("x-fake-received-authorization"),
        Some(fingerprint(&format!("Bearer {OPENAI_KEY}")).as_str())
    );
    let anon = get_with(&gw.url(&format!("/v1/responses/{id}")), &[]);
    assert_eq!(anon.status, 401);

    // input_tokens for an OpenAI model: answered by the gateway.
    let count = post(
        &gw.url("/v1/responses/input_tokens"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        json!({"model": "gpt-4o-mini", "input": "Hello"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(count.status, 200, "{}", count.text());
    let v = count.json();
    assert_eq!(v["object"], "response.input_tokens");
    assert!(v["input_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(
        count.header("x-fake-received-path").is_none(),
        "answered by the gateway"
    );
    // Not for a Claude model.
    let count = post(
        &gw.url("/v1/responses/input_tokens"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        json!({"model": "claude-sonnet-4-5", "input": "Hello"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(count.status, 400, "{}", count.text());
    // Anthropic's count_tokens: forwarded to the Anthropic provider.
    let count = post(
        &gw.url("/v1/messages/count_tokens"),
        &[
            ("content-type", "application/json"),
            ("x-api-key", DEMO_KEY),
            ("anthropic-version", "2023-06-01"),
        ],
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(count.status, 200, "{}", count.text());
    assert_eq!(
        count.header("x-fake-received-path"),
        Some("/v1/messages/count_tokens")
    );
    assert!(count.json()["input_tokens"].as_u64().is_some());
}

#[test]
fn the_openai_python_sdk_uses_the_responses_api_on_both_paths() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    run_sdk_script(&gw, "openai_responses.py", "openai responses: ok");
}

#[test]
fn the_demo_serves_responses_passed_through_and_translated() {
    let fake = Fake::start(Some(OPENAI_KEY));
    let gw = Gateway::start(&fake, Options::default());
    let body = json!({"model": "gpt-4o-mini", "input": "Hello"});
    let r = responses(&gw, &body, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fake-received-path"), Some("/v1/responses"));
    let r = responses(&gw, &body, &[("x-llm-responses", "translate")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-fake-received-path"),
        Some("/v1/chat/completions")
    );
    assert_eq!(r.json()["object"], "response");
    let id = r.json()["id"].as_str().map(str::to_string);
    assert!(id.is_some_and(|i| i.starts_with("resp_")));
}

/// A gateway whose consumer `team-a` (the trusted `x-team` header) has a daily token budget.
fn limited(fake: &Fake, tpd: u64) -> Gateway {
    let mut c = config();
    c["consumers"] = json!([{"name": "team-a"}]);
    c["consumer_header"] = json!("x-team");
    c["limits"] = json!({"default": {"tpd": tpd}});
    let mut opts = Options {
        plugin_config: Some(c),
        ..Options::default()
    };
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(fake, opts)
}

#[test]
fn token_limits_reserve_settle_and_refund_as_for_chat() {
    let fake = Fake::start(None);
    let gw = limited(&fake, 100_000);
    let team = [("x-team", "team-a"), ("x-fake-completion-tokens", "7")];
    let send = |model: &str, max: u64, extra: &[(&str, &str)]| {
        let body = json!({"model": model, "input": "Hello", "max_output_tokens": max});
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(extra);
        post(&gw.url("/v1/responses"), &h, body.to_string().as_bytes())
    };
    // Passed through: reserved 8 (the prompt) + 1000, settled to the provider's 8 + 7.
    let r = send("gpt-4o-mini", 1000, &team);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["total_tokens"], 15);
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 100_000 - (8 + 1000));
    // Translated: the same reservation and settlement.
    let r = send("llama-3", 1000, &team);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["total_tokens"], 15);
    assert_eq!(
        r.num("x-ratelimit-remaining-tokens"),
        100_000 - 15 - (8 + 1000)
    );
    // A provider error is refunded: nothing charged.
    let r = send(
        "llama-3",
        20,
        &[("x-team", "team-a"), ("x-fake-status", "500")],
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let r = send("gpt-4o-mini", 16, &team);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.num("x-ratelimit-remaining-tokens"),
        100_000 - 15 - 15 - (8 + 16)
    );
    let log = gw.access_log(4);
    let totals: Vec<&str> = log
        .iter()
        .filter_map(|l| l["total_tokens"].as_str())
        .collect();
    assert_eq!(totals, ["15", "15", "0", "15"], "{log:?}");

    // Over the budget: refused before the provider, in OpenAI's shape.
    let gw = limited(&fake, 100);
    let r = {
        let body = json!({"model": "llama-3", "input": "Hello", "max_output_tokens": 1000});
        post(
            &gw.url("/v1/responses"),
            &[("content-type", "application/json"), ("x-team", "team-a")],
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert!(r.header("x-fake-received-path").is_none());
}

#[test]
fn the_openai_agents_sdk_runs_an_agent_with_a_tool_on_both_paths() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let out = run_sdk_script(&gw, "openai_agents.py", "openai agents: ok");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("agents usage: "))
        .expect("the SDK's usage totals");
    let sdk: Value = serde_json::from_str(line).expect("usage JSON");
    // Two calls per run (the tool call, then the answer), four runs: the SDK's totals are the
    // gateway's, request for request.
    let log = gw.access_log(8);
    assert_eq!(log.len(), 8, "{log:?}");
    let sum = |field: &str| -> u64 {
        log.iter()
            .map(|l| {
                l[field]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(sdk["requests"], 8);
    assert_eq!(sdk["input"], sum("prompt_tokens"), "{log:?}");
    assert_eq!(sdk["output"], sum("completion_tokens"), "{log:?}");
    assert_eq!(sdk["total"], sum("total_tokens"), "{log:?}");
    assert!(
        log.iter()
            .all(|l| l["endpoint"] == "responses" && l["outcome"] == "ok"),
        "{log:?}"
    );
}

/// Codex (`@openai/codex`, which `make sdk` installs under .venv/codex), or `CODEX_BIN`.
fn codex_bin() -> std::path::PathBuf {
    std::env::var_os("CODEX_BIN").map_or_else(
        || repo().join(".venv/codex/node_modules/.bin/codex"),
        std::path::PathBuf::from,
    )
}

#[test]
fn codex_completes_a_turn_through_the_gateway() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let home = tempfile::tempdir().expect("CODEX_HOME");
    let config = format!(
        "model = \"gpt-4o-mini\"\nmodel_provider = \"gateway\"\n\n[model_providers.gateway]\n\
         name = \"llm-gateway\"\nbase_url = \"{}\"\nenv_key = \"GATEWAY_KEY\"\nwire_api = \"responses\"\n",
        gw.url("/v1")
    );
    std::fs::write(home.path().join("config.toml"), config).expect("config.toml");
    let work = tempfile::tempdir().expect("work dir");
    let bin = codex_bin();
    let out = std::process::Command::new(&bin)
        .args(["exec", "--skip-git-repo-check", "Say hello"])
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("GATEWAY_KEY", DEMO_KEY)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("run {} (make sdk installs Codex): {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Codex prints the tokens the turn used: the provider's usage, as the gateway logged it.
    let used = text
        .lines()
        .skip_while(|l| l.trim() != "tokens used")
        .nth(1)
        .map(|l| l.trim().replace(',', ""))
        .unwrap_or_else(|| panic!("no token count in {text}"));
    let log = gw.access_log(1);
    let turn: Vec<&Value> = log
        .iter()
        .filter(|l| l["endpoint"] == "responses")
        .collect();
    assert!(!turn.is_empty(), "{log:?}");
    assert!(
        turn.iter()
            .all(|l| l["outcome"] == "ok" && l["consumer"] == "demo"),
        "{log:?}"
    );
    let total: u64 = turn
        .iter()
        .filter_map(|l| l["total_tokens"].as_str()?.parse::<u64>().ok())
        .sum();
    assert_eq!(used, total.to_string(), "{text}\n{log:?}");
}

/// A streamed Responses request over a raw connection: what arrived before the end.
fn raw_stream(gw: &Gateway, model: &str, extra: &str) -> String {
    let body = json!({"model": model, "input": "Hello", "stream": true}).to_string();
    let req = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {DEMO_KEY}\r\nconnection: close\r\n{extra}\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    String::from_utf8_lossy(&raw(gw.port, req.as_bytes())).into_owned()
}

#[test]
fn a_cut_stream_is_counted_once_on_both_paths() {
    let fake = Fake::start(None);
    let gw = gateway(&fake);
    let cut = "x-fake-abort-after-events: 4\r\nx-fake-completion-tokens: 20\r\n";
    for model in ["gpt-4o-mini", "llama-3"] {
        let text = raw_stream(&gw, model, cut);
        assert!(text.starts_with("HTTP/1.1 200"), "{model}: {text}");
        assert!(!text.contains("response.completed"), "{model}: {text}");
    }
    let log = gw.access_log(2);
    assert_eq!(log.len(), 2, "{log:?}");
    for l in &log {
        assert_eq!(l["endpoint"], "responses", "{l}");
        assert_eq!(l["outcome"], "stream_incomplete", "{l}");
    }
    // One request each in the metrics, whatever the outcome.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let requests = prom_sum(&gw.prometheus(), "llm_gateway_requests_total", &[]);
    assert_eq!(requests, 2.0, "{}", gw.prometheus());
}
