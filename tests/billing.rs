//! One billing rule for every outcome (README, "What is billed"), followed alike by the metrics,
//! the access log, the usage events and the limits; and the ids that let a client find its
//! request in the gateway's records. The real wasm in real Envoy, one worker.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// A daily window whose tokens come back slowly (10 a second), so a probe reads what was charged.
const TPD: u64 = 864_000;

/// Every outcome gets a consumer of its own (named by `x-team`, listed in the limits so each has
/// its own label and its own token window).
const TEAMS: [&str; 8] = [
    "t-ok",
    "t-stream",
    "t-cut",
    "t-gone",
    "t-500",
    "t-refused",
    "t-hit",
    "t-json-error",
];

fn gateway(fake: &Fake, sink: &Collector) -> Gateway {
    let consumers: serde_json::Map<String, Value> = TEAMS
        .iter()
        .map(|t| (t.to_string(), json!({"tpd": TPD})))
        .collect();
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "routes": [{"name": "cached", "match": {"model": "cached-model"}, "to": {"provider": "openai", "model": "gpt-4o-mini"},
                    "cache": {"ttl_s": 300}}],
        "default": {"to": {"provider": "openai"}},
        "consumer_header": "x-team",
        "limits": {"consumers": consumers, "default_max_tokens": 100},
        "usage_export": {"cluster": "usage", "format": "json", "path": "/events",
                         "batch_size": 1, "flush_interval_ms": 50},
        "tokenizer": {"preload": ["o200k_base"]},
    });
    gateway_with_cluster(fake, config, 1, "usage", sink.port)
}

fn hello(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 50, "stream": stream,
           "messages": [{"role": "user", "content": "Hello, how are you today?"}]})
}

/// A probe of a consumer's daily token window: its `x-ratelimit-remaining-tokens` (what is left
/// after the probe's own reservation), what it reserved, and when.
struct Probe {
    remaining: u64,
    reserved: u64,
    at: std::time::Instant,
    id: String,
}

fn probe(gw: &Gateway, team: &str) -> Probe {
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("probe-{team}-{n}");
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 1,
                      "messages": [{"role": "user", "content": "probe"}]});
    let at = std::time::Instant::now();
    let r = chat_as(gw, team, &body, &[("x-request-id", &id)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let line = log_line(gw, &id);
    Probe {
        remaining: r.num("x-ratelimit-remaining-tokens"),
        reserved: num(&line["counted_prompt_tokens"]) + 1,
        at,
        id,
    }
}

/// What the window was charged between probes `a` and `b` (the requests in between): the
/// window's tokens come back at `TPD / day`, so the figure is known to within what came back
/// in the time between them.
fn charged_between(gw: &Gateway, a: &Probe, b: &Probe) -> std::ops::RangeInclusive<u64> {
    let a_billed = num(&log_line(gw, &a.id)["total_tokens"]);
    let before = a.remaining + a.reserved - a_billed;
    let low = before.saturating_sub(b.remaining + b.reserved);
    let back = (b.at - a.at).as_secs_f64() * TPD as f64 / 86_400.0;
    low..=low + back.ceil() as u64 + 1
}
fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The billed figures of one request in each of the four records.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Billed {
    prompt: u64,
    completion: u64,
}

fn log_line(gw: &Gateway, id: &str) -> Value {
    for _ in 0..100 {
        if let Some(l) = gw.access_log(1).into_iter().find(|l| l["request_id"] == id) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no access log line for {id}");
}

fn event(sink: &Collector, id: &str) -> Value {
    let posts = sink.wait_for(10, |p| events(p).iter().any(|e| e["request_id"] == id));
    events(&posts)
        .into_iter()
        .find(|e| e["request_id"] == id)
        .unwrap_or_else(|| panic!("no usage event for {id}"))
}

fn events(posts: &[Value]) -> Vec<Value> {
    posts
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p["body"].as_str()?).ok())
        .filter_map(|v| v.as_array().cloned())
        .flatten()
        .collect()
}

fn metric(gw: &Gateway, team: &str, ty: &str) -> u64 {
    prom_sum(
        &gw.prometheus(),
        "llm_gateway_tokens_total",
        &[("consumer", team), ("gen_ai_token_type", ty)],
    ) as u64
}

/// Read the four records of request `id` made by `team` after probe `before`, and check they
/// agree; the figures, the access log line, the event.
fn records_agree(
    gw: &Gateway,
    sink: &Collector,
    team: &str,
    id: &str,
    before: &Probe,
) -> (Billed, Value, Value) {
    records_agree_with(gw, sink, team, id, before, 0)
}

/// As `records_agree`, where the consumer's metrics already hold `earlier` tokens billed to
/// requests before the probe.
fn records_agree_with(
    gw: &Gateway,
    sink: &Collector,
    team: &str,
    id: &str,
    before: &Probe,
    earlier: u64,
) -> (Billed, Value, Value) {
    let line = log_line(gw, id);
    let ev = event(sink, id);
    let from_log = Billed {
        prompt: num(&line["prompt_tokens"]),
        completion: num(&line["completion_tokens"]),
    };
    let from_event = Billed {
        prompt: num(&ev["prompt_tokens"]),
        completion: num(&ev["completion_tokens"]),
    };
    let from_metrics = Billed {
        prompt: metric(gw, team, "input"),
        completion: metric(gw, team, "output"),
    };
    assert_eq!(from_log, from_event, "{team}: access log and usage event");
    // The metric also holds the probe before (billed as its access log says).
    let probe_line = log_line(gw, &before.id);
    let probe_billed = Billed {
        prompt: num(&probe_line["prompt_tokens"]),
        completion: num(&probe_line["completion_tokens"]),
    };
    assert_eq!(
        from_log.prompt
            + probe_billed.prompt
            + from_log.completion
            + probe_billed.completion
            + earlier,
        from_metrics.prompt + from_metrics.completion,
        "{team}: access log and metrics ({from_log:?}, {from_metrics:?})"
    );
    assert_eq!(
        num(&line["total_tokens"]),
        from_log.prompt + from_log.completion,
        "{team}: total"
    );
    let after = probe(gw, team);
    let charged = charged_between(gw, before, &after);
    assert!(
        charged.contains(&(from_log.prompt + from_log.completion)),
        "{team}: limits charged {charged:?}, billed {from_log:?}"
    );
    (from_log, line, ev)
}

#[test]
fn every_outcome_is_billed_alike_everywhere() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let gw = gateway(&fake, &sink);

    // ok, with the provider's usage: what it reported.
    let p = probe(&gw, "t-ok");
    let r = chat_as(
        &gw,
        "t-ok",
        &hello("gpt-4o-mini", false),
        &[("x-request-id", "ok-1")],
    );
    assert_eq!(r.status, 200);
    let usage = r.json()["usage"].clone();
    let (b, line, ev) = records_agree(&gw, &sink, "t-ok", "ok-1", &p);
    assert_eq!(b.prompt, usage["prompt_tokens"].as_u64().unwrap());
    assert_eq!(b.completion, usage["completion_tokens"].as_u64().unwrap());
    assert_eq!(line["usage_estimated"], "false");
    assert_eq!(line["outcome"], "ok");
    assert_eq!(ev["usage_estimated"], false);

    // ok, streamed without usage from the provider: the gateway's counts, flagged.
    let p = probe(&gw, "t-stream");
    let r = chat_as(
        &gw,
        "t-stream",
        &hello("gpt-4o-mini", true),
        &[("x-request-id", "stream-1"), ("x-fake-no-usage", "true")],
    );
    assert_eq!(r.status, 200);
    let (b, line, _) = records_agree(&gw, &sink, "t-stream", "stream-1", &p);
    assert_eq!(b.prompt, num(&line["counted_prompt_tokens"]));
    assert!(b.completion > 0);
    assert_eq!(line["usage_estimated"], "true");

    // A stream the provider cut: what was delivered, counted by the gateway.
    let p = probe(&gw, "t-cut");
    // (The connection ends early: read what arrived.)
    let r = post_lenient(
        &gw.url("/v1/chat/completions"),
        &[
            ("x-team", "t-cut"),
            ("content-type", "application/json"),
            ("x-request-id", "cut-1"),
            ("x-fake-abort-after-events", "3"),
            ("x-fake-no-usage", "true"),
        ],
        hello("gpt-4o-mini", true).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    let (b, line, _) = records_agree(&gw, &sink, "t-cut", "cut-1", &p);
    assert_eq!(line["outcome"], "stream_incomplete");
    assert_eq!(b.prompt, num(&line["counted_prompt_tokens"]));
    assert_eq!(line["usage_estimated"], "true");

    // The client left mid-stream: the same rule (what was delivered, counted).
    let p = probe(&gw, "t-gone");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let body = hello("gpt-4o-mini", true).to_string();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-team: t-gone\r\nx-request-id: gone-1\r\nx-fake-chunk-delay-ms: 200\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(500));
    drop(s);
    let (b, line, _) = records_agree(&gw, &sink, "t-gone", "gone-1", &p);
    assert_eq!(b.prompt, num(&line["counted_prompt_tokens"]));
    assert_eq!(line["outcome"], "stream_incomplete");

    // A provider error: nothing billed, the gateway's count still visible apart.
    let p = probe(&gw, "t-500");
    let r = chat_as(
        &gw,
        "t-500",
        &hello("gpt-4o-mini", false),
        &[("x-request-id", "err-1"), ("x-fake-status", "500")],
    );
    assert_eq!(r.status, 500);
    let (b, line, ev) = records_agree(&gw, &sink, "t-500", "err-1", &p);
    assert_eq!(b, Billed::default());
    assert_eq!(line["outcome"], "upstream_error");
    assert!(num(&line["counted_prompt_tokens"]) > 0);
    assert!(num(&ev["counted_prompt_tokens"]) > 0);
    assert_eq!(ev["cost_usd"].as_f64().unwrap_or(0.0), 0.0);

    // Refused by the gateway (a body it cannot read): nothing.
    let p = probe(&gw, "t-refused");
    let r = post_lenient(
        &gw.url("/v1/chat/completions"),
        &[
            ("x-team", "t-refused"),
            ("x-request-id", "refused-1"),
            ("content-type", "application/json"),
        ],
        br#"{"model": "gpt-4o-mini", "messages": "not a list"}"#,
    );
    assert_eq!(r.status, 400);
    let (b, line, _) = records_agree(&gw, &sink, "t-refused", "refused-1", &p);
    assert_eq!(b, Billed::default());
    assert_eq!(line["outcome"], "bad_request");

    // A cache hit: no provider tokens (the saved tokens are counted apart).
    let r = chat_as(
        &gw,
        "t-hit",
        &hello("cached-model", false),
        &[("x-request-id", "miss-1")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-llm-cache"), Some("miss"));
    let p = probe(&gw, "t-hit");
    let r = chat_as(
        &gw,
        "t-hit",
        &hello("cached-model", false),
        &[("x-request-id", "hit-1")],
    );
    assert_eq!(r.header("x-llm-cache"), Some("hit"));
    assert_eq!(r.header("x-llm-gateway-request-id"), Some("hit-1"));
    let miss = num(&log_line(&gw, "miss-1")["total_tokens"]);
    assert!(miss > 0);
    let (b, line, ev) = records_agree_with(&gw, &sink, "t-hit", "hit-1", &p, miss);
    assert_eq!(b, Billed::default());
    assert_eq!(line["outcome"], "cache_hit");
    assert_eq!(line["cache_saved_tokens"], miss.to_string());
    assert_eq!(ev["prompt_tokens"], 0);
}

#[test]
fn a_client_finds_its_request_in_the_records() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let gw = gateway(&fake, &sink);
    let mut by_stream = HashMap::new();
    for stream in [false, true] {
        let r = chat_as(&gw, "t-ok", &hello("gpt-4o-mini", stream), &[]);
        assert_eq!(r.status, 200);
        let ours = r
            .header("x-llm-gateway-request-id")
            .expect("the gateway's request id")
            .to_string();
        let provider = r
            .header("x-request-id")
            .expect("the provider's id")
            .to_string();
        assert_ne!(ours, provider);
        let response_id = if stream {
            let text = r.text();
            let first = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("a chunk");
            serde_json::from_str::<Value>(first).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            r.json()["id"].as_str().unwrap().to_string()
        };
        let line = log_line(&gw, &ours);
        assert_eq!(line["provider_request_id"], provider);
        assert_eq!(line["response_id"], response_id);
        let ev = event(&sink, &ours);
        assert_eq!(ev["provider_request_id"], provider);
        assert_eq!(ev["response_id"], response_id);
        by_stream.insert(stream, ours);
    }
    assert_ne!(by_stream[&false], by_stream[&true]);
    // The gateway's own answers carry it too.
    let r = post_lenient(
        &gw.url("/v1/chat/completions"),
        &[("x-team", "t-ok"), ("content-type", "application/json")],
        b"{",
    );
    assert_eq!(r.status, 400);
    let id = r
        .header("x-llm-gateway-request-id")
        .expect("on a local reply");
    assert_eq!(log_line(&gw, id)["outcome"], "bad_request");
}
