//! Provider cool-down and several keys per provider, in real Envoy with 2 workers: a 429 (with
//! its `Retry-After`) from a provider cools its key in shared data for every worker; splits and
//! chains pass over it and its other keys serve, until the time it gave; when every provider is
//! cooling the client gets one 429 with the earliest `Retry-After`. Each test asserts what the
//! client got, the access log and the metrics.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const KEY_B: &str = "sk-test-second-openai-key";
const KEY_C: &str = "sk-test-third-openai-key";

fn static_cluster(name: &str, port: u16) -> Value {
    json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
           "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
}

/// One Envoy (2 workers) on `ok`, with `limited` (a fake that answers every request 429 with
/// `retry-after: 2`) and `keyed` (a fake that answers 429 with `retry-after: 30` to key B only).
fn gateway(ok: &Fake, limited: &Fake, keyed: &Fake) -> Gateway {
    let config = json!({
        "providers": {
            "alpha": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "beta": {"cluster": "backup", "api_key_env": "BACKUP_API_KEY"},
            "limited": {"cluster": "limited", "api_key_env": "OPENAI_API_KEY"},
            "limited-too": {"cluster": "limited", "api_key_env": "OPENAI_API_KEY"},
            "keyed": {"cluster": "keyed", "api_key_env": ["OPENAI_API_KEY", "KEY_B", "KEY_C"]}
        },
        "routes": [
            {"name": "single", "match": {"model": "alpha-only"}, "to": {"provider": "alpha"}},
            {"name": "split", "match": {"model": "split-model"},
             "split": [{"provider": "alpha", "weight": 50}, {"provider": "beta", "weight": 50}]},
            {"name": "chain", "match": {"model": "chain-model"}, "to": {"provider": "limited"},
             "fallback": {"cluster": "failover-cool", "to": [{"provider": "beta"}]}},
            {"name": "all-limited", "match": {"model": "limited-split"},
             "split": [{"provider": "limited", "weight": 1}, {"provider": "limited-too", "weight": 1}]},
            {"name": "keys", "match": {"model": "keyed-model"}, "to": {"provider": "keyed"}}
        ],
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}]
    });
    let (limited_port, keyed_port) = (limited.port, keyed.port);
    let mut opts = Options {
        plugin_config: Some(config),
        ..Options::default()
    };
    opts.edit = Some(Box::new(move |b: &mut Value| {
        let clusters = b["static_resources"]["clusters"].as_array_mut().unwrap();
        let chain = chain_cluster(clusters, "failover-cool", &["limited", "backup"]);
        clusters.push(chain);
        clusters.push(static_cluster("limited", limited_port));
        clusters.push(static_cluster("keyed", keyed_port));
    }));
    with_env_key(&mut opts, "KEY_B", KEY_B);
    with_env_key(&mut opts, "KEY_C", KEY_C);
    Gateway::start(ok, opts)
}

fn fakes() -> (Fake, Fake, Fake) {
    (
        Fake::start(None),
        Fake::start_with(
            None,
            &[("x-fake-status", "429"), ("x-fake-retry-after", "2")],
        ),
        Fake::start_with(
            None,
            &[
                ("x-fake-rate-limited-key", KEY_B),
                ("x-fake-retry-after", "30"),
            ],
        ),
    )
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]})
}

/// Connections each worker has accepted so far.
fn worker_connections(gw: &Gateway) -> BTreeMap<String, u64> {
    gw.stats()
        .lines()
        .filter(|l| l.starts_with("listener.") && l.contains(".worker_"))
        .filter_map(|l| {
            let (name, v) = l.split_once(": ")?;
            let name = name.strip_suffix(".downstream_cx_total")?;
            let worker = name.rsplit('.').next()?.to_string();
            Some((worker, v.trim().parse().ok()?))
        })
        .collect()
}

/// `n` requests for `model` at once, each on its own connection.
fn burst(gw: &Gateway, model: &str, n: usize) -> Vec<Resp> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| s.spawn(|| chat(gw, &hello(model), &[])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn gauge(gw: &Gateway, provider: &str, key: &str) -> f64 {
    prom_sum(
        &gw.prometheus(),
        "llm_gateway_provider_cooling",
        &[("gen_ai_provider_name", provider), ("provider_key", key)],
    )
}

#[test]
fn a_429_cools_the_provider_on_every_worker_until_the_time_it_gave() {
    let (ok, limited, keyed) = fakes();
    let gw = gateway(&ok, &limited, &keyed);
    // Warm both workers up, so that their VMs exist before the 429.
    for r in burst(&gw, "alpha-only", 8) {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let before = worker_connections(&gw);
    let t0 = Instant::now();
    let r = chat(
        &gw,
        &hello("alpha-only"),
        &[("x-fake-status", "429"), ("x-fake-retry-after", "2")],
    );
    assert_eq!(r.status, 429, "the provider's own 429 reaches the client");
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(gw.access_log(9).pop().unwrap()["outcome"], "upstream_error");

    // While it cools: alpha-only gets one local 429 each, the split goes to beta only; both
    // workers take part.
    let refused = burst(&gw, "alpha-only", 8);
    let split = burst(&gw, "split-model", 16);
    assert!(
        t0.elapsed() < Duration::from_millis(1_800),
        "the burst took too long to say anything"
    );
    for r in &refused {
        assert_eq!(r.status, 429, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["type"], "requests");
        let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&after), "retry-after {after}");
    }
    for r in &split {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let after = worker_connections(&gw);
    assert_eq!(after.len(), 2, "{after:?}");
    for (w, n) in &after {
        assert!(
            n > before.get(w).unwrap_or(&0),
            "worker {w} took none of the burst: {before:?} -> {after:?}"
        );
    }
    let log = gw.access_log(9 + 24);
    let burst_lines = &log[9..];
    let refusals: Vec<&Value> = burst_lines
        .iter()
        .filter(|l| l["outcome"] == "providers_cooling")
        .collect();
    assert_eq!(refusals.len(), 8);
    for l in &refusals {
        assert_eq!(l["status"], 429);
        assert_eq!(l["upstream_cluster"], Value::Null, "nothing was sent: {l}");
        assert_eq!(l["total_tokens"], Value::Null);
    }
    let served: Vec<&Value> = burst_lines
        .iter()
        .filter(|l| l["outcome"] == "ok")
        .collect();
    assert_eq!(served.len(), 16);
    assert!(
        served
            .iter()
            .all(|l| l["provider"] == "beta" && l["upstream_cluster"] == "backup"),
        "the split sent a request to the cooling provider: {served:?}"
    );
    let prom = gw.prometheus();
    let tags = [("gen_ai_provider_name", "alpha"), ("provider_key", "0")];
    assert_eq!(
        prom_sum(&prom, "llm_gateway_provider_cooldowns_total", &tags),
        1.0
    );
    assert_eq!(gauge(&gw, "alpha", "0"), 1.0);
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_requests_total",
            &[("outcome", "providers_cooling")]
        ),
        8.0,
        "each refusal counted once"
    );

    // On time: at 2 s it serves again, and the gauge follows within a tick.
    std::thread::sleep(Duration::from_millis(2_050).saturating_sub(t0.elapsed()));
    let r = chat(&gw, &hello("alpha-only"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.access_log(34).pop().unwrap()["provider"], "alpha");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge(&gw, "alpha", "0") != 0.0 {
        assert!(Instant::now() < deadline, "the gauge stayed at 1");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_chain_starts_after_its_cooling_provider_and_all_cooling_is_one_429() {
    let (ok, limited, keyed) = fakes();
    let gw = gateway(&ok, &limited, &keyed);
    // First: limited answers 429 (retry-after 2), beta serves; limited now cools.
    let t0 = Instant::now();
    let r = chat(&gw, &hello("chain-model"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let first = gw.access_log(1).pop().unwrap();
    assert_eq!(first["attempts"], "2", "{first}");
    assert_eq!(first["failover"], "limited:429");
    assert_eq!(first["provider"], "beta");
    // Next ones start at beta: one attempt, straight to its cluster.
    for r in burst(&gw, "chain-model", 6) {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let log = gw.access_log(7);
    for l in &log[1..] {
        assert_eq!(l["provider"], "beta", "{l}");
        assert_eq!(l["upstream_cluster"], "backup", "{l}");
        assert_eq!(l["failover"], Value::Null, "{l}");
    }
    // A split of two providers that both answer 429: limited cools already, so the first
    // request goes to limited-too (its 429 reaches the client); then both cool, and the next
    // gets one local 429 with the earliest Retry-After (limited's), nothing sent.
    let a = chat(&gw, &hello("limited-split"), &[]);
    assert_eq!(a.status, 429);
    let l = gw.access_log(8).pop().unwrap();
    assert_eq!(
        (&l["provider"], &l["outcome"]),
        (&json!("limited-too"), &json!("upstream_error"))
    );
    let c = chat(&gw, &hello("limited-split"), &[]);
    assert_eq!(c.status, 429);
    assert_eq!(c.json()["error"]["code"], "rate_limit_exceeded");
    let after: u64 = c.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&after), "retry-after {after}");
    let l = gw.access_log(9).pop().unwrap();
    assert_eq!(l["outcome"], "providers_cooling");
    assert_eq!(l["upstream_cluster"], Value::Null);
    // When limited's cool-down ends, the chain starts at it again.
    std::thread::sleep(Duration::from_millis(2_050).saturating_sub(t0.elapsed()));
    assert_eq!(chat(&gw, &hello("chain-model"), &[]).status, 200);
    let l = gw.access_log(10).pop().unwrap();
    assert_eq!(l["failover"], "limited:429", "{l}");
    let prom = gw.prometheus();
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_provider_cooldowns_total",
            &[("gen_ai_provider_name", "limited")]
        ),
        2.0,
        "two chain attempts met limited's 429"
    );
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_provider_cooldowns_total",
            &[("gen_ai_provider_name", "limited-too")]
        ),
        1.0
    );
}

#[test]
fn requests_spread_over_a_providers_keys_and_a_rate_limited_key_rests_alone() {
    let (ok, limited, keyed) = fakes();
    let gw = gateway(&ok, &limited, &keyed);
    let n = 40;
    let statuses: Vec<u16> = (0..n)
        .map(|_| chat(&gw, &hello("keyed-model"), &[]).status)
        .collect();
    let log = gw.access_log(n);
    let keys: Vec<&str> = log
        .iter()
        .map(|l| l["provider_key"].as_str().unwrap())
        .collect();
    // Key 1 (KEY_B) is refused by its provider once; then it rests, and keys 0 and 2 serve.
    let first_b = keys
        .iter()
        .position(|k| *k == "1")
        .expect("key 1 was drawn");
    assert_eq!(statuses[first_b], 429);
    assert_eq!(log[first_b]["outcome"], "upstream_error");
    for (i, s) in statuses.iter().enumerate() {
        if i != first_b {
            assert_eq!(*s, 200, "request {i} (key {})", keys[i]);
        }
    }
    assert!(
        keys[first_b + 1..].iter().all(|k| *k != "1"),
        "a cooling key was used: {keys:?}"
    );
    let count = |k: &str| keys.iter().filter(|x| **x == k).count();
    assert!(count("0") >= 5 && count("2") >= 5, "not spread: {keys:?}");
    // The metrics say the same, by key index.
    let prom = gw.prometheus();
    for k in ["0", "1", "2"] {
        let tags = [("gen_ai_provider_name", "keyed"), ("provider_key", k)];
        assert_eq!(
            prom_sum(&prom, "llm_gateway_provider_key_requests_total", &tags) as usize,
            count(k),
            "key {k}"
        );
    }
    let cool = |k: &str| {
        let tags = [("gen_ai_provider_name", "keyed"), ("provider_key", k)];
        (
            prom_sum(&prom, "llm_gateway_provider_cooldowns_total", &tags),
            prom_sum(&prom, "llm_gateway_provider_cooling", &tags),
        )
    };
    assert_eq!(cool("1"), (1.0, 1.0));
    assert_eq!(cool("0"), (0.0, 0.0));
    assert_eq!(cool("2"), (0.0, 0.0));
    // A key's value is in no metric and no log line.
    let text = format!("{prom}{}", gw.stats());
    let logged = serde_json::to_string(&log).unwrap();
    for secret in [OPENAI_KEY, KEY_B, KEY_C] {
        assert!(!text.contains(secret), "{secret} in the metrics");
        assert!(!logged.contains(secret), "{secret} in the access log");
    }
}
