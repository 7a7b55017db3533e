//! Provider cool-down through the flow: a `429` (or a `503` that says when to come back) from a
//! provider cools its key in shared data; routing then passes over it, until it ends.

use serde_json::json;

use super::support::*;
use crate::cooldown::{Cooling, KEY};
use crate::flow::attempt::AttemptFilter;
use crate::flow::Step;
use crate::host::fake::FakeHost;
use crate::limits::Store;
use crate::metrics::stat_name;
use crate::names::metric;

const CLUSTER: &str = "x-llm-gateway-cluster";

fn cooling_metric(name: &str, provider: &str, key: &str) -> String {
    crate::cooldown::key_stat(name, provider, key.parse().unwrap())
}

/// Attempt `n` of the chain request `g` sent, in the upstream filter, on the same shared data.
fn attempt_of(g: &FakeHost, n: u64) -> FakeHost {
    let mut h = next(g, &[]);
    h.env = g.env.clone();
    h.request_headers = g.request_headers.clone();
    h.request_body = g.request_body.clone();
    h.properties = g.properties.clone();
    h.properties.insert(
        "upstream.request_attempt_count".into(),
        n.to_le_bytes().to_vec(),
    );
    h
}

/// A request for `model` on the VM's shared data (`prev`'s), admitted: what it did.
fn admit(vm: &crate::flow::vm::Vm, prev: &FakeHost, model: &str, draw: u32) -> (Step, FakeHost) {
    let (step, h, _) = admit_ex(vm, prev, model, draw);
    (step, h)
}

fn admit_ex(
    vm: &crate::flow::vm::Vm,
    prev: &FakeHost,
    model: &str,
    draw: u32,
) -> (Step, FakeHost, crate::flow::Exchange) {
    let mut h = next(prev, &chat());
    h.now_ns.set(prev.now_ns.get());
    h.env = prev.env.clone();
    h.draws.extend([draw, draw, draw]);
    let mut ex = vm.exchange(1).unwrap();
    let step = send(&mut ex, &mut h, &hello(model));
    (step, h, ex)
}

#[test]
fn a_429_cools_the_provider_for_every_request_until_the_time_it_gave() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    let rate_limited = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    answer(
        &mut ex,
        &mut h,
        429,
        &[("content-type", "application/json"), ("retry-after", "5")],
        rate_limited,
    );
    ex.finish(&mut h);
    // The client got the provider's own 429; the key cools for 5 s, counted once.
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("upstream_error"));
    assert_eq!(
        h.metric_value(&cooling_metric(metric::COOLDOWNS, "openai", "0")),
        1
    );
    assert_eq!(
        h.metric_value(&cooling_metric(metric::COOLING, "openai", "0")),
        1
    );
    assert_eq!(
        Cooling::read(&h.shared, NOW_MS).until("openai", 0),
        Some(NOW_MS + 5_000)
    );

    // The next request for a model only openai serves: one 429, nothing sent.
    let (step, mut h2) = admit(&vm, &h, "gpt-4o-mini", 0);
    let r = reply(step);
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "retry-after"), Some("5"));
    let body = parsed(&r.body);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(h2.request_header(CLUSTER), None);
    let mut ex = vm.exchange(1).unwrap();
    ex.record.local_outcome = Some("providers_cooling");
    ex.finish(&mut h2);
    // The split (openai 90, azure 10) goes to azure whatever it draws.
    for draw in [0, 5, 9] {
        let (step, h3) = admit(&vm, &h, "gpt-4o", draw);
        assert_eq!(step, Step::Continue);
        assert_eq!(h3.request_header(CLUSTER).as_deref(), Some("azure"));
    }
    // The chain openai -> claude starts at claude, its own cluster (a tail of one).
    let (step, h4) = admit(&vm, &h, "gpt-4.1", 0);
    assert_eq!(step, Step::Continue);
    assert_eq!(h4.request_header(CLUSTER).as_deref(), Some("anthropic"));
    assert!(!h4.properties.contains_key("llm.plan"));

    // 4.9 s on it still cools; at 5 s it serves again.
    h.advance_ms(4_999);
    assert_eq!(reply(admit(&vm, &h, "gpt-4o-mini", 0).0).status, 429);
    h.advance_ms(1);
    let (step, h5) = admit(&vm, &h, "gpt-4o-mini", 0);
    assert_eq!(step, Step::Continue);
    assert_eq!(h5.request_header(CLUSTER).as_deref(), Some("openai"));
    // The tick sets its gauge back to 0 and drops the line; later ticks find nothing.
    let mut vm = vm;
    let mut t = next(&h, &[]);
    t.now_ns.set(h.now_ns.get());
    vm.on_tick(&mut t);
    assert_eq!(
        t.metric_value(&cooling_metric(metric::COOLING, "openai", "0")),
        0
    );
    assert_eq!(t.shared.get(KEY).unwrap().0, b"");
}

#[test]
fn a_503_cools_only_when_it_says_when_and_other_answers_never() {
    type Case = (u16, &'static [(&'static str, &'static str)], Option<u64>);
    let cases: [Case; 5] = [
        (503, &[("retry-after", "2")], Some(2_000)),
        (503, &[], None),
        (500, &[("retry-after", "2")], None),
        (429, &[], Some(1_000)),
        (429, &[("retry-after-ms", "250")], Some(250)),
    ];
    for (status, headers, cools) in cases {
        let mut h = host(&chat());
        let vm = vm(&h, &config());
        let mut ex = vm.exchange(1).unwrap();
        assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
        let mut hs = vec![("content-type", "application/json")];
        hs.extend_from_slice(headers);
        answer(
            &mut ex,
            &mut h,
            status,
            &hs,
            br#"{"error":{"message":"x"}}"#,
        );
        assert_eq!(
            Cooling::read(&h.shared, NOW_MS).until("openai", 0),
            cools.map(|ms| NOW_MS + ms),
            "{status} {headers:?}"
        );
    }
    // A provider with cool-down off never cools.
    let mut c = config();
    c["providers"]["openai"]["cooldown"] = json!({"max_ms": 0});
    let mut h = host(&chat());
    let vm = vm(&h, &c);
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    answer(&mut ex, &mut h, 429, &[("retry-after", "9")], b"{}");
    assert!(Cooling::read(&h.shared, NOW_MS).is_empty());
}

#[test]
fn a_chain_attempt_that_got_a_429_cools_its_provider_for_the_next_requests() {
    let mut g = host(&chat());
    let vm = vm(&g, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut g, &hello("gpt-4.1")), Step::Continue);
    // Attempt 1 (openai) runs in the upstream filter, on the same shared data.
    let mut h = attempt_of(&g, 1);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    h.respond(429, &[("retry-after", "30")], b"{}");
    assert_eq!(a.on_response_headers(&mut h, false), Step::Continue);
    assert_eq!(
        Cooling::read(&h.shared, NOW_MS).until("openai", 0),
        Some(NOW_MS + 30_000)
    );
    assert_eq!(
        h.metric_value(&cooling_metric(metric::COOLDOWNS, "openai", "0")),
        1
    );
    // The last attempt (claude) answering 429 cools claude too.
    let mut h2 = attempt_of(&g, 2);
    let mut a2 = AttemptFilter::default();
    assert_eq!(a2.on_request_headers(&mut h2), Step::Continue);
    h2.respond(429, &[], b"{}");
    a2.on_response_headers(&mut h2, false);
    assert_eq!(
        Cooling::read(&h2.shared, NOW_MS).until("claude", 0),
        Some(NOW_MS + 1_000)
    );
    // Every provider of the chain cooling: one 429 with the earliest end (claude's, 1 s).
    let r = reply(admit(&vm, &g, "gpt-4.1", 0).0);
    assert_eq!((r.status, header(&r, "retry-after")), (429, Some("1")));
    // After it, the chain starts at claude alone.
    g.advance_ms(1_000);
    let (step, h3) = admit(&vm, &g, "gpt-4.1", 0);
    assert_eq!(step, Step::Continue);
    assert_eq!(h3.request_header(CLUSTER).as_deref(), Some("anthropic"));
    assert_eq!(
        h3.request_header("x-api-key").as_deref(),
        Some("sk-ant"),
        "claude's own credential, set by the gateway filter"
    );
}

/// openai with three keys.
fn three_keys() -> (serde_json::Value, FakeHost) {
    let mut c = config();
    c["providers"]["openai"]["api_key_env"] =
        json!(["OPENAI_API_KEY", "OPENAI_KEY_B", "OPENAI_KEY_C"]);
    let mut h = host(&chat());
    h.env.insert("OPENAI_KEY_B".into(), "sk-b".into());
    h.env.insert("OPENAI_KEY_C".into(), "sk-c".into());
    (c, h)
}

#[test]
fn requests_spread_over_a_providers_keys_and_a_rate_limited_key_rests_alone() {
    let (c, h) = three_keys();
    let vm = vm(&h, &c);
    let sent = |draw: u32| {
        let (step, h2, ex) = admit_ex(&vm, &h, "gpt-4o-mini", draw);
        assert_eq!(step, Step::Continue);
        (h2.request_header("authorization"), ex, h2)
    };
    assert_eq!(sent(0).0.as_deref(), Some("Bearer sk-openai"));
    assert_eq!(sent(1).0.as_deref(), Some("Bearer sk-b"));
    let (key, mut ex, mut h2) = sent(2);
    assert_eq!(key.as_deref(), Some("Bearer sk-c"));
    // Key 2 gets a 429: it cools alone, named by its index.
    answer(&mut ex, &mut h2, 429, &[("retry-after", "10")], b"{}");
    ex.finish(&mut h2);
    assert_eq!(h2.prop("llm.provider_key").as_deref(), Some("2"));
    assert_eq!(
        h2.metric_value(&stat_name(
            metric::KEY_REQUESTS,
            &[
                (metric::TAG_PROVIDER, "openai"),
                (metric::TAG_PROVIDER_KEY, "2")
            ]
        )),
        1
    );
    assert_eq!(
        h2.metric_value(&cooling_metric(metric::COOLING, "openai", "2")),
        1
    );
    let cooling = Cooling::read(&h2.shared, NOW_MS);
    assert_eq!(cooling.usable_keys("openai", 3), vec![0, 1]);
    // Draws now pick between keys 0 and 1 only; no request carries key 2.
    assert_eq!(sent(0).0.as_deref(), Some("Bearer sk-openai"));
    assert_eq!(sent(1).0.as_deref(), Some("Bearer sk-b"));
    assert_eq!(sent(2).0.as_deref(), Some("Bearer sk-openai"));
    assert_eq!(sent(3).0.as_deref(), Some("Bearer sk-b"));
    // A request the gateway refuses itself was sent with no key: none logged or counted.
    let (_, mut h3, mut ex3) = admit_ex(&vm, &h, "gpt-4o-mini", 0);
    let refused = ex3.reject(crate::error::HttpError::invalid_key());
    assert_eq!(refused.status, 401);
    ex3.finish(&mut h3);
    assert_eq!(h3.prop("llm.provider_key"), None);
    assert!(!h3
        .metrics
        .keys()
        .any(|k| k.starts_with(metric::KEY_REQUESTS)));
    // No key's value appears in any metric name or logged property.
    let text = format!(
        "{:?} {:?}",
        h2.metrics.keys().collect::<Vec<_>>(),
        h2.properties
    );
    for secret in ["sk-openai", "sk-b", "sk-c"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
}

#[test]
fn a_chain_attempt_uses_the_key_the_gateway_drew_and_cools_that_key() {
    let (c, mut g) = three_keys();
    let vm = vm(&g, &c);
    g.draws.extend([1]);
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut g, &hello("gpt-4.1")), Step::Continue);
    let plan = crate::failover::Plan::decode(&g.properties["llm.plan"]).unwrap();
    assert_eq!(plan.attempts[0].key, 1);
    assert_eq!(plan.attempts[0].key_env.as_deref(), Some("OPENAI_KEY_B"));
    let mut h = attempt_of(&g, 1);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(
        h.request_header("authorization").as_deref(),
        Some("Bearer sk-b")
    );
    h.respond(429, &[], b"{}");
    a.on_response_headers(&mut h, false);
    let cooling = Cooling::read(&h.shared, NOW_MS);
    assert_eq!(cooling.usable_keys("openai", 3), vec![0, 2]);
    // The request is logged with the key that served: here the chain's second provider did.
    g.properties = h.properties.clone();
    let mut journal = crate::failover::Journal::default();
    journal.record(1, "openai", &crate::failover::Outcome::Status(429));
    journal.record(2, "claude", &crate::failover::Outcome::Status(200));
    g.properties
        .insert("llm.journal".into(), journal.encode().into_bytes());
    answer(&mut ex, &mut g, 200, &JSON, &completion("Hi"));
    ex.finish(&mut g);
    assert_eq!(g.prop("llm.provider").as_deref(), Some("claude"));
    assert_eq!(g.prop("llm.provider_key"), None, "claude has one key");
}
