//! Local limits in real Envoy with 2 workers: exact across worker VMs, reserve then reconcile,
//! isolation between consumers, streams charged from their usage, slots released on every path.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A gateway whose consumers are named by the trusted `x-team` header, with `limits`.
fn gateway(limits: Value) -> (Fake, Gateway) {
    gateway_with(limits, true)
}

fn gateway_with(limits: Value, body_routing: bool) -> (Fake, Gateway) {
    let fake = Fake::start(None);
    let config = json!({
        "body_routing": body_routing,
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        // The models and consumers the metrics assert are listed, so they get labels.
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini", "mystery-model"]},
        "consumers": [{"name": "team-a"}, {"name": "team-b"}, {"name": "team-c"}],
        "consumer_header": "x-team",
        "limits": limits,
    });
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(config),
            ..Options::default()
        },
    );
    (fake, gw)
}

fn hello(max_tokens: Option<u64>) -> Value {
    let mut b = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    if let Some(m) = max_tokens {
        b["max_tokens"] = m.into();
    }
    b
}

/// `n` requests at once, each on its own connection; the responses in any order.
fn burst(
    gw: &Gateway,
    n: usize,
    team: &str,
    body: Value,
    extra: Vec<(String, String)>,
) -> Vec<Resp> {
    let url = gw.url("/v1/chat/completions");
    let go = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, team, body, extra, go) = (
                url.clone(),
                team.to_string(),
                body.clone(),
                extra.clone(),
                go.clone(),
            );
            std::thread::spawn(move || {
                let mut h: Vec<(&str, &str)> =
                    vec![("content-type", "application/json"), ("x-team", &team)];
                h.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                go.wait();
                post(&url, &h, body.to_string().as_bytes())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn statuses(rs: &[Resp]) -> (usize, usize) {
    let ok = rs.iter().filter(|r| r.status == 200).count();
    let limited = rs.iter().filter(|r| r.status == 429).count();
    assert_eq!(ok + limited, rs.len(), "unexpected statuses");
    (ok, limited)
}

#[test]
fn a_burst_of_50_against_a_limit_of_10_admits_exactly_10() {
    let (_fake, gw) = gateway(json!({"default": {"rpm": 10}}));
    // The provider is slow, so all 50 are in flight together on both workers.
    let rs = burst(
        &gw,
        50,
        "team-a",
        hello(None),
        vec![("x-fake-delay-ms".into(), "300".into())],
    );
    assert_eq!(statuses(&rs), (10, 40));

    let rejected = rs.iter().find(|r| r.status == 429).unwrap();
    let e = rejected.json();
    assert_eq!(e["error"]["type"], "requests");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "Rate limit reached for team-a on requests per minute (RPM): Limit 10, Remaining 0"
        ),
        "{msg}"
    );
    // A request comes back every 6 s at 10 per minute.
    let retry: u64 = rejected.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "retry-after {retry}");
    assert_eq!(rejected.num("x-ratelimit-limit-requests"), 10);
    assert_eq!(rejected.num("x-ratelimit-remaining-requests"), 0);
    assert!(
        rejected.header("x-fake-received-model").is_none(),
        "a 429 reached the provider"
    );

    // The admitted ones counted down 9..0, one each.
    let mut remaining: Vec<u64> = rs
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.num("x-ratelimit-remaining-requests"))
        .collect();
    remaining.sort();
    assert_eq!(remaining, (0..10).collect::<Vec<_>>());
    let ok = rs.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(ok.num("x-ratelimit-limit-requests"), 10);
    assert!(ok
        .header("x-ratelimit-reset-requests")
        .unwrap()
        .ends_with('s'));

    assert_eq!(
        gw.counter(
            "wasmcustom.llm_gateway_ratelimit_rejections_total.consumer=.=team-a;.;reason=.=rpm;.;"
        ),
        40
    );
    assert_eq!(
        gw.counter_sum("wasmcustom.llm_gateway_requests_total.gen_ai_request_model=.=gpt-4o-mini;.;gen_ai_provider_name=.=none;.;consumer=.=team-a;.;outcome=.=rate_limited"),
        40
    );
    let prom = gw.prometheus();
    assert!(
        prom.lines()
            .any(|l| l.starts_with("llm_gateway_ratelimit_rejections_total{")
                && l.contains("consumer=\"team-a\"")
                && l.contains("reason=\"rpm\"")
                && l.ends_with(" 40")),
        "no labelled rejection metric"
    );
}

#[test]
fn a_token_budget_reserves_then_refunds_what_was_not_used() {
    // A daily budget refills 0.01 token a second: the figures below are exact.
    let (_fake, gw) = gateway(json!({"default": {"tpd": 1000}}));
    let slow = vec![
        ("x-fake-delay-ms".to_string(), "1500".to_string()),
        ("x-fake-completion-tokens".to_string(), "5".to_string()),
    ];
    // Each reserves prompt + 400: two fit in 1000, the third does not while they run.
    let rs = burst(&gw, 3, "team-a", hello(Some(400)), slow);
    assert_eq!(statuses(&rs), (2, 1));
    let rejected = rs.iter().find(|r| r.status == 429).unwrap();
    let e = rejected.json();
    assert_eq!(e["error"]["type"], "tokens");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("on tokens per day (TPD): Limit 1000"), "{msg}");
    assert!(rejected.header("retry-after").is_some());

    // They used prompt + 5 each; the rest of their reservations came back.
    let ok = rs.iter().find(|r| r.status == 200).unwrap();
    let used = ok.json()["usage"]["total_tokens"].as_u64().unwrap();
    let prompt = ok.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(used, prompt + 5);
    let r = chat_as(
        &gw,
        "team-a",
        &hello(Some(400)),
        &[("x-fake-completion-tokens", "5")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.num("x-ratelimit-limit-tokens"), 1000);
    assert_eq!(
        r.num("x-ratelimit-remaining-tokens"),
        1000 - 2 * used - (prompt + 400),
        "the third reservation sees the refunds"
    );
    // Using more than was reserved is charged too: 3 × used now spent.
    let r = chat_as(
        &gw,
        "team-a",
        &hello(Some(1)),
        &[("x-fake-completion-tokens", "1")],
    );
    assert_eq!(
        r.num("x-ratelimit-remaining-tokens"),
        1000 - 3 * used - (prompt + 1)
    );

    // Reservation error per request: 395 for the first three, 0 for the last.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let prom = gw.prometheus();
        if prom.lines().any(|l| {
            l.starts_with("llm_gateway_ratelimit_reservation_error_tokens_count")
                && l.ends_with(" 4")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reservation error histogram:\n{prom}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn limits_of_one_consumer_never_touch_another() {
    let (_fake, gw) = gateway(json!({
        "default": {"rpm": 2, "tpd": 100000},
        "consumers": {"team-b": {"rpm": 5}}
    }));
    for _ in 0..2 {
        assert_eq!(chat_as(&gw, "team-a", &hello(None), &[]).status, 200);
    }
    assert_eq!(chat_as(&gw, "team-a", &hello(None), &[]).status, 429);
    // team-b has its own counters and its own (overridden) limit, and inherits the budget.
    for i in 0..5u64 {
        let r = chat_as(&gw, "team-b", &hello(Some(10)), &[]);
        assert_eq!(r.status, 200, "team-b request {i}");
        assert_eq!(r.num("x-ratelimit-limit-requests"), 5);
        assert_eq!(r.num("x-ratelimit-remaining-requests"), 4 - i);
        assert_eq!(r.num("x-ratelimit-limit-tokens"), 100000);
    }
    assert_eq!(chat_as(&gw, "team-b", &hello(None), &[]).status, 429);
    // A third consumer is untouched by both.
    let r = chat_as(&gw, "team-c", &hello(None), &[]);
    assert_eq!(r.num("x-ratelimit-remaining-requests"), 1);
}

#[test]
fn per_model_limits_apply_to_their_model_only() {
    let (_fake, gw) = gateway(json!({
        "default": {"rpm": 100, "models": [{"model": "gpt-4o-mini*", "rpm": 1}]}
    }));
    assert_eq!(chat_as(&gw, "team-a", &hello(None), &[]).status, 200);
    let r = chat_as(&gw, "team-a", &hello(None), &[]);
    assert_eq!(r.status, 429);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("team-a / gpt-4o-mini*"), "{msg}");
    let other = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
    let r = chat_as(&gw, "team-a", &other, &[]);
    assert_eq!(r.status, 200);
    // The consumer-wide window saw both admitted requests, not the refused one.
    assert_eq!(r.num("x-ratelimit-remaining-requests"), 98);
}

#[test]
fn streams_are_charged_from_the_streamed_usage() {
    let (_fake, gw) = gateway(json!({"default": {"tpd": 100000}}));
    let mut body = hello(Some(1000));
    body["stream"] = true.into();
    let r = chat_as(&gw, "team-a", &body, &[("x-fake-completion-tokens", "7")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 100000 - (8 + 1000));
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The usage chunk the filter asked for is stripped, but it was read: 8 + 7 charged.
    assert!(!text.contains("\"usage\":{"), "{text}");
    let r = chat_as(&gw, "team-a", &hello(Some(10)), &[]);
    assert_eq!(
        r.num("x-ratelimit-remaining-tokens"),
        100000 - (8 + 7) - (8 + 10)
    );
    let log = gw.access_log(2);
    assert_eq!(log[0]["total_tokens"], "15", "{}", log[0]);
}

/// Open a streamed request and hang up after its first bytes.
fn hang_up_mid_stream(gw: &Gateway) {
    let body = json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 10,
                      "messages": [{"role": "user", "content": "Hello"}]})
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-team: team-a\r\nx-fake-completion-tokens: 50\r\nx-fake-chunk-delay-ms: 100\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(n > 0);
    drop(s);
}

#[test]
fn in_flight_slots_are_released_on_every_path() {
    let (_fake, gw) = gateway(json!({"default": {"concurrent": 2}}));
    let slow = vec![("x-fake-delay-ms".to_string(), "1000".to_string())];
    // Two in flight: a third is refused as concurrent.
    let rs = burst(&gw, 3, "team-a", hello(None), slow.clone());
    assert_eq!(statuses(&rs), (2, 1));
    let msg = rs.iter().find(|r| r.status == 429).unwrap().json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("Too many concurrent requests for team-a: Limit 2"),
        "{msg}"
    );

    // Success released both: two fit again.
    assert_eq!(
        statuses(&burst(&gw, 2, "team-a", hello(None), slow.clone())),
        (2, 0)
    );
    // An upstream error releases its slot.
    for _ in 0..3 {
        let r = chat_as(&gw, "team-a", &hello(None), &[("x-fake-status", "500")]);
        assert_eq!(r.status, 500);
    }
    // A client that hangs up mid-stream releases its slot.
    for _ in 0..3 {
        hang_up_mid_stream(&gw);
    }
    // A request refused by the filter itself never held one.
    let r = post(
        &gw.url("/v1/chat/completions"),
        &[("x-team", "team-a")],
        b"{not json",
    );
    assert_eq!(r.status, 400);
    // Envoy logs a reset stream when it notices the hang-up; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rs = burst(&gw, 2, "team-a", hello(None), slow.clone());
        if statuses(&rs) == (2, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slots still held after every path ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn headers_only_mode_limits_requests_and_charges_tokens_after() {
    // A small daily window: a token comes back only every 8.6 s, so the figures below are
    // exact however slowly the machine runs (at 100,000 a day, one came back every 0.86 s).
    let (_fake, gw) = gateway_with(json!({"default": {"rpm": 3, "tpd": 10000}}), false);
    let r = chat_as(
        &gw,
        "team-a",
        &hello(Some(50)),
        &[("x-fake-completion-tokens", "5")],
    );
    assert_eq!(r.status, 200);
    // Admitted on one token; the reservation is charged once the body has passed.
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 10000 - 1);
    let r = chat_as(&gw, "team-a", &hello(Some(50)), &[]);
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 10000 - (8 + 5) - 1);
    assert_eq!(chat_as(&gw, "team-a", &hello(None), &[]).status, 200);
    assert_eq!(chat_as(&gw, "team-a", &hello(None), &[]).status, 429);
}
