//! Usage export in real Envoy: events posted to a stub collector (tests/collector), batched,
//! complete and exactly once, parsed with the official OTLP protobuf types; a failing, slow or
//! absent collector never harms a request, and what is dropped is counted; cost in dollars in
//! the event, the access log and the cost counter.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A gateway (consumers named by `x-team`) that exports usage to the cluster `usage` at
/// `sink_port`, with `export` merged into the `usage_export` block.
fn gateway(fake: &Fake, sink_port: u16, export: Value, extra: Value, workers: u32) -> Gateway {
    let mut usage = json!({"cluster": "usage"});
    merge(&mut usage, export);
    let mut config = json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "claude": {"cluster": "backup", "format": "anthropic", "api_key_env": "BACKUP_API_KEY"},
        },
        "routes": [{"match": {"model": "claude-*"}, "to": {"provider": "claude"}}],
        // The models and consumers the metrics assert are listed, so they get labels.
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini", "mystery-model"]},
        "consumers": [{"name": "team-a"}, {"name": "team-b"}, {"name": "team-c"}],
        "consumer_header": "x-team",
        "usage_export": usage,
    });
    merge(&mut config, extra);
    gateway_with_cluster(fake, config, workers, "usage", sink_port)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello, how are you today?"}]})
}

/// Every OTLP log record the collector accepted, as (attributes by key, the record).
fn records(posts: &[Value]) -> Vec<(HashMap<String, Value>, Value)> {
    posts
        .iter()
        .filter(|p| p["status"] == 200)
        .flat_map(|p| {
            p["otlp"]["resourceLogs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|rl| rl["scopeLogs"].as_array().cloned().unwrap_or_default())
        .flat_map(|sl| sl["logRecords"].as_array().cloned().unwrap_or_default())
        .map(|r| (support::usage::otlp_attributes(&r), r))
        .collect()
}

fn accepted_events(posts: &[Value]) -> usize {
    records(posts).len()
}

/// The shipped prices, picodollars per token: (input, cached input, cache write, output).
fn price(model: &str) -> (u64, u64, u64, u64) {
    let p = llm_gateway::cost::DEFAULT_PRICES
        .iter()
        .find(|p| p.0 == model)
        .expect("shipped price");
    let pico = |v: f64| (v * 1e6).round() as u64;
    (pico(p.1), pico(p.2), pico(p.3), pico(p.4))
}

#[test]
fn otlp_events_arrive_batched_complete_and_exactly_once() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let gw = gateway(
        &fake,
        sink.port,
        json!({"batch_size": 4, "flush_interval_ms": 300}),
        json!({}),
        1,
    );
    let mut sent: HashMap<String, (Resp, &str, bool)> = HashMap::new();
    for i in 0..10 {
        let id = format!("usage-test-{i}");
        let team = if i % 2 == 0 { "team-a" } else { "team-b" };
        let stream = i % 3 == 0;
        let mut body = hello("gpt-4o-mini");
        if stream {
            body["stream"] = true.into();
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = chat_as(
            &gw,
            team,
            &body,
            &[
                ("x-request-id", &id),
                ("x-fake-cached-tokens", "4"),
                ("x-fake-reasoning-tokens", "2"),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        sent.insert(id, (r, team, stream));
    }
    // The 11th is refused by the gateway: still one event, with no tokens and no cost.
    let refused = post(
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("x-team", "team-a"),
            ("x-request-id", "usage-test-bad"),
        ],
        b"{not json",
    );
    assert_eq!(refused.status, 400);

    let posts = sink.wait_for(10, |p| accepted_events(p) >= 11);
    for p in &posts {
        assert!(
            p["error"].is_null(),
            "the collector could not parse a post: {p}"
        );
        assert_eq!(p["path"], "/v1/logs");
        assert_eq!(p["headers"]["content-type"], "application/json");
        assert_eq!(p["headers"]["host"], "usage");
    }
    // Batched: 11 events in posts of at most 4 (size bound), the last ones by age.
    let sizes: Vec<usize> = posts
        .iter()
        .map(|p| records(std::slice::from_ref(p)).len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 11, "{sizes:?}");
    assert!(sizes.iter().all(|n| (1..=4).contains(n)), "{sizes:?}");
    assert!(sizes.contains(&4), "a full batch: {sizes:?}");
    let resource = &posts[0]["otlp"]["resourceLogs"][0]["resource"]["attributes"];
    assert_eq!(
        resource[0],
        json!({"key": "service.name", "value": {"stringValue": "llm-gateway"}})
    );

    let recs = records(&posts);
    let mut seen = HashMap::new();
    for (a, r) in &recs {
        *seen
            .entry(
                a["llm_gateway.request_id"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
            .or_insert(0) += 1;
        assert_eq!(r["eventName"], "llm_gateway.usage");
        assert_eq!(r["severityNumber"], "SEVERITY_NUMBER_INFO");
        let t: u64 = r["timeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64;
        assert!(now - t < 120_000_000_000, "started in the last 2 minutes");
    }
    let mut expected: Vec<String> = sent.keys().cloned().collect();
    expected.push("usage-test-bad".into());
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for id in &expected {
        assert_eq!(seen.get(id), Some(&1), "{id} exactly once: {seen:?}");
    }

    // Every field, against the response the client got.
    let (input, cached_price, _, output) = price("gpt-4o-mini");
    let mut total_pico = 0;
    for (a, _) in &recs {
        let id = a["llm_gateway.request_id"].as_str().unwrap_or_default();
        if id == "usage-test-bad" {
            assert_eq!(a["llm_gateway.outcome"], "bad_request");
            assert_eq!(a["http.response.status_code"], 400);
            assert_eq!(a["gen_ai.usage.input_tokens"], 0);
            assert!(!a.contains_key("llm_gateway.cost_usd"));
            continue;
        }
        let (resp, team, stream) = &sent[id];
        let usage = if *stream {
            let text = resp.text();
            let last = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|l| *l != "[DONE]")
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|c| c["usage"].is_object())
                .expect("usage chunk");
            last["usage"].clone()
        } else {
            resp.json()["usage"].clone()
        };
        let n = |k: &str| usage[k].as_u64().expect("usage figure");
        let (prompt, completion) = (n("prompt_tokens"), n("completion_tokens"));
        assert_eq!(a["llm_gateway.consumer"], *team);
        assert_eq!(a["gen_ai.request.model"], "gpt-4o-mini");
        assert_eq!(a["llm_gateway.upstream_model"], "gpt-4o-mini");
        assert_eq!(a["gen_ai.response.model"], "gpt-4o-mini");
        assert_eq!(a["gen_ai.provider.name"], "openai");
        assert_eq!(a["gen_ai.operation.name"], "chat");
        assert_eq!(a["llm_gateway.endpoint"], "chat.completions");
        assert_eq!(a["llm_gateway.stream"], *stream);
        assert_eq!(a["http.response.status_code"], 200);
        assert_eq!(a["llm_gateway.outcome"], "ok");
        assert_eq!(a["gen_ai.usage.input_tokens"], prompt);
        assert_eq!(a["gen_ai.usage.output_tokens"], completion);
        assert_eq!(a["llm_gateway.usage.total_tokens"], prompt + completion);
        assert_eq!(a["llm_gateway.usage.cached_input_tokens"], 4);
        assert_eq!(a["llm_gateway.usage.reasoning_tokens"], 2);
        assert_eq!(a["llm_gateway.usage.estimated"], false);
        assert!(a["llm_gateway.duration_ms"].as_u64().is_some());
        assert_eq!(a.contains_key("llm_gateway.ttft_ms"), *stream, "{a:?}");
        let pico = (prompt - 4) * input + 4 * cached_price + completion * output;
        assert_eq!(
            a["llm_gateway.cost_usd"].as_f64(),
            Some(pico as f64 / 1e12),
            "{a:?}"
        );
        total_pico += pico;
    }

    // The access log has the same cost; the cost counter the sum (in nanodollars).
    let log = gw.access_log(11);
    for line in &log {
        let id = line["request_id"].as_str().unwrap_or_default();
        let event = recs
            .iter()
            .find(|(a, _)| a["llm_gateway.request_id"] == id)
            .expect("an event per access-log line");
        match event.0.get("llm_gateway.cost_usd") {
            Some(c) => assert_eq!(
                line["cost_usd"]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok()),
                c.as_f64(),
                "{line}"
            ),
            None => assert!(line["cost_usd"].is_null(), "{line}"),
        }
    }
    let prom = gw.prometheus();
    let nanos = prom_sum(
        &prom,
        "llm_gateway_cost_usd_nanos_total",
        &[("gen_ai_request_model", "gpt-4o-mini")],
    );
    let expected_nanos: f64 = recs
        .iter()
        .filter_map(|(a, _)| a.get("llm_gateway.cost_usd")?.as_f64())
        .map(|d| (d * 1e9).round())
        .sum();
    assert_eq!(nanos, expected_nanos, "{prom}");
    assert!((nanos - total_pico as f64 / 1000.0).abs() <= 10.0);
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cost_usd_nanos_total",
            &[("consumer", "team-b")]
        ) + prom_sum(
            &prom,
            "llm_gateway_cost_usd_nanos_total",
            &[("consumer", "team-a")]
        ),
        nanos
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_sent_total", &[]),
        11.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_buffered", &[]),
        0.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_dropped_total", &[]),
        0.0
    );
}

#[test]
fn json_array_format_custom_prices_and_anthropic_cache_writes() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let gw = gateway(
        &fake,
        sink.port,
        json!({"format": "json", "path": "/ingest/usage", "headers": {"Authorization": "Bearer sink-token"},
               "flush_interval_ms": 100}),
        json!({"pricing": {"models": {"gpt-4o-mini": {"input": 1, "cached_input": 0.5, "output": 2},
                                      "claude-*": {"input": 10, "cache_write": 20, "cached_input": 1, "output": 30}}}}),
        2,
    );
    let r = chat_as(
        &gw,
        "team-a",
        &hello("gpt-4o-mini"),
        &[("x-request-id", "j-1")],
    );
    assert_eq!(r.status, 200);
    let u = r.json()["usage"].clone();
    let claude = chat_as(
        &gw,
        "team-a",
        &hello("claude-sonnet-4-5"),
        &[
            ("x-request-id", "j-2"),
            ("x-fake-cache-read-tokens", "2048"),
            ("x-fake-cache-creation-tokens", "100"),
        ],
    );
    assert_eq!(claude.status, 200, "{}", claude.text());
    let cu = claude.json()["usage"].clone();
    // A model nobody priced: no cost, counted as unpriced.
    let other = chat_as(
        &gw,
        "team-a",
        &hello("mystery-model"),
        &[("x-request-id", "j-3")],
    );
    assert_eq!(other.status, 200);

    let posts = sink.wait_for(10, |p| {
        p.iter()
            .map(|x| {
                serde_json::from_str::<Value>(x["body"].as_str().unwrap_or("[]"))
                    .ok()
                    .and_then(|v| v.as_array().map(Vec::len))
                    .unwrap_or(0)
            })
            .sum::<usize>()
            >= 3
    });
    let mut events = Vec::new();
    for p in &posts {
        assert_eq!(p["path"], "/ingest/usage");
        assert_eq!(p["headers"]["authorization"], "Bearer sink-token");
        assert!(p["error"].is_null(), "{p}");
        let arr: Value =
            serde_json::from_str(p["body"].as_str().expect("body")).expect("a JSON array");
        events.extend(arr.as_array().expect("array").iter().cloned());
    }
    assert_eq!(events.len(), 3, "{events:?}");
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["request_id"] == id)
            .expect("event")
            .clone()
    };

    let e = by_id("j-1");
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(
        (e["prompt_tokens"].as_u64(), e["completion_tokens"].as_u64()),
        (Some(p), Some(c))
    );
    assert_eq!(
        e["cost_usd"].as_f64(),
        Some((p * 1_000_000 + c * 2_000_000) as f64 / 1e12)
    );
    assert_eq!(e["consumer"], "team-a");
    assert_eq!(e["stream"], false);
    assert!(e["time_unix_ms"].as_u64().is_some());

    // Anthropic: 2048 cache reads at 1 $/M, 100 cache writes at 20 $/M, the rest at 10 $/M.
    let e = by_id("j-2");
    assert_eq!(e["provider"], "claude");
    assert_eq!(e["cached_tokens"], 2048);
    assert_eq!(e["cache_write_tokens"], 100);
    let prompt = cu["prompt_tokens"].as_u64().unwrap();
    let out = cu["completion_tokens"].as_u64().unwrap();
    assert_eq!(e["prompt_tokens"].as_u64(), Some(prompt));
    let pico =
        (prompt - 2148) * 10_000_000 + 2048 * 1_000_000 + 100 * 20_000_000 + out * 30_000_000;
    assert_eq!(e["cost_usd"].as_f64(), Some(pico as f64 / 1e12), "{e}");

    let e = by_id("j-3");
    assert!(e.get("cost_usd").is_none(), "{e}");
    let prom = gw.prometheus();
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cost_unpriced_requests_total",
            &[("gen_ai_request_model", "mystery-model")]
        ),
        1.0,
        "{prom}"
    );
}

#[test]
fn a_failing_collector_gets_retries_and_each_event_once() {
    let fake = Fake::start(None);
    // The first two posts fail with a 500; the retries deliver.
    let sink = Collector::start(&["--fail-first", "2"]);
    let gw = gateway(
        &fake,
        sink.port,
        json!({"flush_interval_ms": 100, "batch_size": 50}),
        json!({}),
        1,
    );
    for i in 0..5 {
        let r = chat_as(
            &gw,
            "team-a",
            &hello("gpt-4o-mini"),
            &[("x-request-id", &format!("r-{i}"))],
        );
        assert_eq!(r.status, 200);
    }
    let posts = sink.wait_for(10, |p| accepted_events(p) >= 5);
    let failed = posts.iter().filter(|p| p["status"] == 500).count();
    assert_eq!(failed, 2, "{posts:?}");
    let mut ids: Vec<String> = records(&posts)
        .iter()
        .map(|(a, _)| {
            a["llm_gateway.request_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["r-0", "r-1", "r-2", "r-3", "r-4"]);
    let prom = gw.prometheus();
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_usage_export_failures_total",
            &[("reason", "500")]
        ),
        2.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_sent_total", &[]),
        5.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_dropped_total", &[]),
        0.0
    );
}

#[test]
fn a_collector_answering_500_costs_requests_nothing_and_drops_are_counted() {
    let fake = Fake::start(None);
    let sink = Collector::start(&["--status", "500"]);
    let gw = gateway(
        &fake,
        sink.port,
        json!({"flush_interval_ms": 50, "batch_size": 5, "max_retries": 1}),
        json!({}),
        2,
    );
    for _ in 0..20 {
        assert_eq!(
            chat_as(&gw, "team-a", &hello("gpt-4o-mini"), &[]).status,
            200
        );
    }
    // Each batch: one post and one retry, then dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = loop {
        let d = prom_sum(
            &gw.prometheus(),
            "llm_gateway_usage_events_dropped_total",
            &[("reason", "retries_exhausted")],
        );
        if d >= 20.0 || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dropped, 20.0);
    let prom = gw.prometheus();
    let posts = sink.received().len() as f64;
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_usage_export_failures_total",
            &[("reason", "500")]
        ),
        posts
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_sent_total", &[]),
        0.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_usage_events_buffered", &[]),
        0.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_requests_total", &[("outcome", "ok")]),
        20.0
    );
}

#[test]
fn no_collector_many_requests_bounded_buffer_and_memory() {
    let fake = Fake::start(None);
    // Nobody listens on the sink's port.
    let gw = gateway(
        &fake,
        free_port(),
        json!({"flush_interval_ms": 50, "batch_size": 10, "max_buffered_events": 40, "max_retries": 1}),
        json!({}),
        1,
    );
    let memory = |gw: &Gateway| prom_sum(&gw.prometheus(), "llm_gateway_vm_memory_bytes", &[]);
    let run = |n: usize| {
        let url = gw.url("/v1/chat/completions");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let body = hello("gpt-4o-mini").to_string();
                    let mut worst = Duration::ZERO;
                    for _ in 0..n / 4 {
                        let t = Instant::now();
                        let r = post(
                            &url,
                            &[("content-type", "application/json"), ("x-team", "team-a")],
                            body.as_bytes(),
                        );
                        assert_eq!(r.status, 200, "{}", r.text());
                        worst = worst.max(t.elapsed());
                    }
                    worst
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .max()
            .unwrap_or_default()
    };
    run(400);
    let after_warmup = memory(&gw);
    let worst = run(2000);
    let after = memory(&gw);
    let prom = gw.prometheus();
    let buffered = prom_sum(&prom, "llm_gateway_usage_events_buffered", &[]);
    let dropped = prom_sum(&prom, "llm_gateway_usage_events_dropped_total", &[]);
    assert!(buffered <= 40.0, "buffer bound: {buffered}");
    assert_eq!(
        dropped + buffered,
        2400.0,
        "every event is buffered or counted as dropped"
    );
    assert!(
        prom_sum(
            &prom,
            "llm_gateway_usage_events_dropped_total",
            &[("reason", "buffer_full")]
        ) > 0.0
    );
    // Nobody listening: Envoy answers each post 503 itself.
    let failures = prom_sum(&prom, "llm_gateway_usage_export_failures_total", &[]);
    assert!(failures > 0.0);
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_usage_export_failures_total",
            &[("reason", "503")]
        ),
        failures,
        "{prom}"
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_requests_total", &[("outcome", "ok")]),
        2400.0
    );
    assert!(after > 0.0);
    assert!(
        after <= after_warmup + 1_048_576.0,
        "VM memory grew from {after_warmup} to {after} bytes over 2000 more requests"
    );
    assert!(worst < Duration::from_secs(2), "a request took {worst:?}");
}

#[test]
fn a_slow_collector_does_not_delay_requests() {
    let fake = Fake::start(None);
    let sink = Collector::start(&["--delay-ms", "3000"]);
    let gw = gateway(
        &fake,
        sink.port,
        json!({"flush_interval_ms": 20, "batch_size": 1, "timeout_ms": 500, "max_retries": 0}),
        json!({}),
        1,
    );
    let mut worst = Duration::ZERO;
    for _ in 0..30 {
        let t = Instant::now();
        assert_eq!(
            chat_as(&gw, "team-a", &hello("gpt-4o-mini"), &[]).status,
            200
        );
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        worst < Duration::from_millis(500),
        "a request took {worst:?} while the collector hung"
    );
    // The posts time out (no response) and, with no retries, their events are dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let prom = gw.prometheus();
        let dropped = prom_sum(&prom, "llm_gateway_usage_events_dropped_total", &[]);
        let buffered = prom_sum(&prom, "llm_gateway_usage_events_buffered", &[]);
        if dropped == 30.0 && buffered == 0.0 {
            // Each post timed out: Envoy answers it 504 itself.
            assert_eq!(
                prom_sum(
                    &prom,
                    "llm_gateway_usage_export_failures_total",
                    &[("reason", "504")]
                ),
                prom_sum(&prom, "llm_gateway_usage_export_failures_total", &[]),
                "{prom}"
            );
            assert!(prom_sum(&prom, "llm_gateway_usage_export_failures_total", &[]) >= 4.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped {dropped}, buffered {buffered}\n{prom}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
