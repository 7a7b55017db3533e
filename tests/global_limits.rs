//! Global limits: the filter calls a rate limit service over Envoy's RLS gRPC protocol.
//! The service is the `ratelimit-service` fixture (envoy-types + limitador) with its counters in
//! a real Redis; two Envoy instances share one budget through it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const RLS_CONFIG: &str = "
domain: llm-gateway
descriptors:
  - key: consumer
    descriptors:
      - key: unit
        value: requests
        rate_limit: {unit: day, requests_per_unit: 6}
      - key: unit
        value: tokens
        rate_limit: {unit: day, requests_per_unit: 1000}
  # Team ops: $0.05 a month, in micro-dollars (a counter per month value).
  - key: team
    value: ops
    descriptors:
      - {key: budget_month, rate_limit: {unit: year, requests_per_unit: 50000}}
  # team-b spends its token budget over however many requests the report timing takes: its
  # request limit must not run out first.
  - key: consumer
    value: team-b
    descriptors:
      - key: unit
        value: requests
        rate_limit: {unit: day, requests_per_unit: 1000}
      - key: unit
        value: tokens
        rate_limit: {unit: day, requests_per_unit: 1000}
";

fn gateway(fake: &Fake, rls_port: u16, global: Value) -> Gateway {
    gateway_in_mode(fake, rls_port, global, true)
}

/// `body_routing: false` runs as under Istio's WasmPlugin: without
/// `allow_on_headers_stop_iteration`, the headers are held only while the service answers.
fn gateway_in_mode(fake: &Fake, rls_port: u16, global: Value, body_routing: bool) -> Gateway {
    let config = json!({
        "body_routing": body_routing,
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        // The models and consumers the metrics assert are listed, so they get labels.
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini", "mystery-model"]},
        "consumers": [{"name": "team-a"}, {"name": "team-b"}, {"name": "team-c"}],
        "consumer_header": "x-team",
        "tokenizer": {"preload": ["o200k_base"]},
        "limits": {"global": global},
    });
    start(fake, rls_port, config, body_routing)
}

/// Envoy with the plugin `config` and the `ratelimit` cluster at `rls_port`; `body_routing: false`
/// removes `allow_on_headers_stop_iteration`, as under Istio's WasmPlugin.
fn start(fake: &Fake, rls_port: u16, config: Value, body_routing: bool) -> Gateway {
    Gateway::start(
        fake,
        Options {
            plugin_config: Some(config),
            edit: Some(Box::new(move |b: &mut Value| {
                b["static_resources"]["clusters"]
                    .as_array_mut()
                    .unwrap()
                    .push(grpc_cluster("ratelimit", rls_port));
                if !body_routing {
                    let wasm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]
                        ["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"];
                    wasm.as_object_mut()
                        .unwrap()
                        .remove("allow_on_headers_stop_iteration");
                }
            })),
            ..Options::default()
        },
    )
}

fn ask(gw: &Gateway, team: &str, extra: &[(&str, &str)]) -> Resp {
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 1000,
                      "messages": [{"role": "user", "content": "Hello"}]});
    chat_as(gw, team, &body, extra)
}

#[test]
fn two_gateways_share_one_budget() {
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, RLS_CONFIG, None);
    let fake = Fake::start(None);
    let global = json!({"cluster": "ratelimit", "timeout_ms": 2000, "failure_mode": "closed"});
    let a = gateway(&fake, rls.port, global.clone());
    let b = gateway(&fake, rls.port, global);

    // Six requests a day for team-a, whichever gateway they reach.
    let mut ok = Vec::new();
    let mut limited = Vec::new();
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = ask(gw, "team-a", &[]);
        match r.status {
            200 => ok.push(r),
            429 => limited.push(r),
            s => panic!("status {s}: {}", r.text()),
        }
    }
    assert_eq!((ok.len(), limited.len()), (6, 2));
    let remaining: Vec<u64> = ok
        .iter()
        .map(|r| r.num("x-ratelimit-remaining-requests"))
        .collect();
    assert_eq!(remaining, [5, 4, 3, 2, 1, 0]);
    assert_eq!(ok[0].num("x-ratelimit-limit-requests"), 6);
    let e = limited[0].json();
    assert_eq!(e["error"]["type"], "requests");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Rate limit reached for team-a on requests per day (global): Limit 6."),
        "{msg}"
    );
    assert!(limited[0].header("retry-after").is_some());
    assert!(limited[0].header("x-fake-received-model").is_none());
    assert_eq!(
        a.counter("wasmcustom.llm_gateway_ratelimit_rejections_total.consumer=.=team-a;.;reason=.=global;.;")
            + b.counter("wasmcustom.llm_gateway_ratelimit_rejections_total.consumer=.=team-a;.;reason=.=global;.;"),
        2
    );

    // Tokens: the prompt is charged at admission, the completion reported when it ends.
    let r = ask(&a, "team-b", &[("x-fake-completion-tokens", "100")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 1000 - 8);
    // Reports leave every 100 ms; the other gateway then sees them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = ask(&b, "team-b", &[("x-fake-completion-tokens", "800")]);
        assert_eq!(r.status, 200, "{}", r.text());
        let left = r.num("x-ratelimit-remaining-tokens");
        if left != 1000 - 8 - 8 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let left = r.num("x-ratelimit-remaining-tokens");
    assert!(
        left <= 1000 - 108 - 8,
        "gateway b did not see a's completion: {left} left"
    );
    // b's 800-token completion spends the budget: a refuses next.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = ask(&a, "team-b", &[]);
        if r.status == 429 {
            assert_eq!(r.json()["error"]["type"], "tokens");
            break;
        }
        assert!(Instant::now() < deadline, "token budget never ran out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nothing listens on the service's port.
#[test]
fn service_down_fails_open_or_closed_as_configured() {
    let fake = Fake::start(None);
    let dead = free_port();
    let open = gateway(
        &fake,
        dead,
        json!({"cluster": "ratelimit", "timeout_ms": 500, "failure_mode": "open"}),
    );
    let closed = gateway(
        &fake,
        dead,
        json!({"cluster": "ratelimit", "timeout_ms": 500, "failure_mode": "closed"}),
    );
    for _ in 0..3 {
        let r = ask(&open, "team-a", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = ask(&closed, "team-a", &[]);
        assert_eq!(r.status, 503);
        let e = r.json();
        assert_eq!(e["error"]["code"], "rate_limit_service_unavailable");
        assert_eq!(e["error"]["type"], "server_error");
        assert!(r.header("x-fake-received-model").is_none());
    }
    let failures = |gw: &Gateway| {
        gw.counter_sum(
            "wasmcustom.llm_gateway_ratelimit_global_failures_total.reason=.=unavailable",
        )
    };
    assert_eq!(failures(&open), 3);
    assert_eq!(failures(&closed), 3);
    let log = closed.access_log(3);
    assert_eq!(log[0]["outcome"], "ratelimit_unavailable");
}

#[test]
fn a_slow_service_times_out() {
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, RLS_CONFIG, Some(2000));
    let fake = Fake::start(None);
    let open = gateway(
        &fake,
        rls.port,
        json!({"cluster": "ratelimit", "timeout_ms": 150, "failure_mode": "open"}),
    );
    let closed = gateway(
        &fake,
        rls.port,
        json!({"cluster": "ratelimit", "timeout_ms": 150, "failure_mode": "closed"}),
    );
    let t0 = Instant::now();
    assert_eq!(ask(&open, "team-a", &[]).status, 200);
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "waited {took:?}");
    let t0 = Instant::now();
    assert_eq!(ask(&closed, "team-a", &[]).status, 503);
    assert!(t0.elapsed() < Duration::from_millis(1500));
    let stats = open.stats();
    assert_eq!(
        open.counter_sum("wasmcustom.llm_gateway_ratelimit_global_failures_total.reason=.=timeout"),
        1,
        "{}",
        stats
            .lines()
            .filter(|l| l.contains("ratelimit"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        closed
            .counter_sum("wasmcustom.llm_gateway_ratelimit_global_failures_total.reason=.=timeout"),
        1
    );
}

#[test]
fn headers_only_mode_asks_the_service_before_forwarding() {
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, RLS_CONFIG, None);
    let fake = Fake::start(None);
    let gw = gateway_in_mode(
        &fake,
        rls.port,
        json!({"cluster": "ratelimit", "timeout_ms": 2000, "failure_mode": "closed"}),
        false,
    );
    let statuses: Vec<u16> = (0..7).map(|_| ask(&gw, "team-a", &[]).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);
    // The body still reaches the provider whole after the wait.
    let r = ask(&gw, "team-c", &[("x-fake-completion-tokens", "3")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["prompt_tokens"], 8);
}

/// A gateway whose consumer team-b (its request limit high enough not to refuse first) is in
/// team ops, with gpt-4o-mini at $0.001 a token and the
/// month's dollar budgets kept by the service.
fn budget_gateway(fake: &Fake, rls_port: u16) -> Gateway {
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini"]},
        "consumers": [{"name": "team-a"}, {"name": "team-b", "team": "ops"}],
        "consumer_header": "x-team",
        "pricing": {"models": {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}},
        "limits": {"global": {"cluster": "ratelimit", "timeout_ms": 2000, "failure_mode": "closed",
                              "budgets": ["month"]}},
    });
    start(fake, rls_port, config, true)
}

#[test]
fn a_global_dollar_budget_is_shared_by_two_envoys_and_survives_restarting_both() {
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, RLS_CONFIG, None);
    let fake = Fake::start(None);
    let small = json!({"model": "gpt-4o-mini", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "Hello"}]});
    let two = [("x-fake-completion-tokens", "2")];
    let refused = {
        let a = budget_gateway(&fake, rls.port);
        let b = budget_gateway(&fake, rls.port);
        // Each request costs 8 + 2 tokens, $0.010: the prompt's $0.008 at admission, the rest
        // reported when it ends. Alternating gateways, the team's $0.05 runs out.
        let mut admitted = 0;
        let refused = loop {
            let gw = if admitted % 2 == 0 { &a } else { &b };
            let r = chat_as(gw, "team-b", &small, &two);
            if r.status != 200 {
                break r;
            }
            admitted += 1;
            assert!(admitted < 12, "the global budget never refused");
            std::thread::sleep(Duration::from_millis(300));
        };
        // Exactly $0.05: five requests, whatever gateway served them.
        assert_eq!(admitted, 5);
        refused
    };
    assert_eq!(refused.status, 429, "{}", refused.text());
    let e = refused.json();
    assert_eq!(e["error"]["code"], "insufficient_quota");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "Budget exceeded for team-b on USD per month of team ops (global): Limit $0.05."
        ),
        "{msg}"
    );
    assert_eq!(refused.header("x-should-retry"), Some("false"));

    // Both Envoys are gone; new ones see the same spend in Redis.
    let a = budget_gateway(&fake, rls.port);
    let b = budget_gateway(&fake, rls.port);
    for gw in [&a, &b] {
        let r = chat_as(gw, "team-b", &small, &two);
        assert_eq!(r.status, 429, "after the restart: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "insufficient_quota");
    }
    assert_eq!(
        a.counter("wasmcustom.llm_gateway_ratelimit_rejections_total.consumer=.=team-b;.;reason=.=global_budget;.;"),
        1
    );
    // A consumer outside the team is untouched.
    assert_eq!(chat_as(&a, "team-a", &small, &two).status, 200);
}
