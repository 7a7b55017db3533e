//! The configuration's maxima in real Envoy: a plugin configuration with every size and count
//! at the largest value it accepts loads, and the VM serves traffic with it (chat requests, the
//! response cache and its semantic index, rate limits with a global service, usage export to a
//! collector) without aborting. Each maximum just above is refused, naming the field, in the
//! unit tests (`config::tests::every_size_has_a_maximum_named_in_its_error`).

mod support;

use std::time::{Duration, Instant};

use llm_gateway::config::{MAX_BODY_BYTES, MAX_DEFAULT_MAX_TOKENS, MAX_TIMEOUT_MS, MAX_TRACKED};
use llm_gateway::{cache, usage};
use serde_json::{json, Value};
use support::*;

/// Every size and count at its maximum. `usage_export.flush_interval_ms` is the one exception:
/// a time rather than a size, kept short so the test sees a flush (its maximum is refused or
/// accepted in the unit tests like the others).
fn at_maxima() -> Value {
    json!({
        "max_request_body_bytes": MAX_BODY_BYTES,
        "max_response_body_bytes": MAX_BODY_BYTES,
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "embedder": {"cluster": "embedder", "api_key_env": "OPENAI_API_KEY"},
        },
        "routes": [{
            "match": {"model": "gpt-4o-mini"}, "to": {"provider": "openai"},
            "cache": {"ttl_s": cache::MAX_TTL_S, "semantic": {"threshold": 0.8}},
        }],
        "default": {"to": {"provider": "openai"}},
        "consumer_header": "x-team",
        "limits": {
            "default": {"rpm": 1000, "tpm": 10_000_000},
            "max_tracked": MAX_TRACKED,
            "default_max_tokens": MAX_DEFAULT_MAX_TOKENS,
            // Nothing listens there: each call fails at once and the request goes on.
            "global": {"cluster": "ratelimit", "timeout_ms": MAX_TIMEOUT_MS, "failure_mode": "open"},
        },
        "usage_export": {
            "cluster": "usage",
            "batch_size": usage::MAX_BATCH_SIZE,
            "max_buffered_events": usage::MAX_BUFFERED_EVENTS,
            "flush_interval_ms": 100,
            "max_retries": usage::MAX_RETRIES,
            "timeout_ms": MAX_TIMEOUT_MS,
        },
        "cache": {
            "max_entries": cache::MAX_ENTRIES,
            "max_bytes": cache::MAX_BYTES,
            "max_entry_bytes": cache::MAX_ENTRY_BYTES,
            "semantic": {
                "embeddings": {"provider": "embedder", "model": "text-embedding-3-small",
                               "timeout_ms": MAX_TIMEOUT_MS, "dimensions": cache::MAX_DIMENSIONS},
                "max_vectors": cache::MAX_VECTORS,
            },
        },
    })
}

/// Lines of Envoy's log that say a Wasm VM aborted (`proxy_on_tick failed: Uncaught
/// RuntimeError: unreachable`, after `memory allocation of ... failed` or a panic).
fn vm_failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("panicked")
                || l.contains("runtimeerror")
                || l.contains("uncaught")
                || l.contains("memory allocation")
                || l.contains("capacity overflow")
                || l.contains("wasm vm failed")
                || l.contains("failed to load")
        })
        .collect()
}

#[test]
fn a_configuration_at_every_maximum_serves_traffic() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let (fake_port, sink_port, rls_port) = (fake.port, sink.port, free_port());
    let started = Instant::now();
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(at_maxima()),
            workers: 2,
            edit: Some(Box::new(move |b: &mut Value| {
                let clusters = b["static_resources"]["clusters"]
                    .as_array_mut()
                    .expect("clusters");
                clusters.push(http_cluster("embedder", fake_port));
                clusters.push(http_cluster("usage", sink_port));
                clusters.push(grpc_cluster("ratelimit", rls_port));
            })),
            ..Options::default()
        },
    );
    // What the largest table (`max_tracked` slots made at configuration) costs at start.
    eprintln!(
        "bounds: Envoy ready in {} ms with max_tracked {MAX_TRACKED}",
        started.elapsed().as_millis()
    );
    let log = gw.envoy_log();
    assert!(log.contains("llm-gateway: configured"));
    for l in log.lines().filter(|l| {
        l.contains("llm-gateway: configured") || l.contains("starting main dispatch loop")
    }) {
        eprintln!("bounds: {l}");
    }

    let stat = |name: &str| gw.counter(name);
    let vms = stat("wasm.wasm_vm_count");
    assert!(vms > 0);

    let ask = |team: &str, text: &str| {
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]});
        let r = chat_as(&gw, team, &body, &[]);
        assert_eq!(r.status, 200, "{text}: {}", r.text());
        r.header("x-llm-cache").unwrap_or("(absent)").to_string()
    };
    // A store, then an exact hit on either worker; a paraphrase goes through the semantic
    // index (4096-dimension embeddings in a ring of the largest size).
    assert_eq!(ask("team-a", "How do I reset my password?"), "miss");
    for _ in 0..4 {
        assert_eq!(ask("team-a", "How do I reset my password?"), "hit");
    }
    let para = ask("team-a", "Explain how to reset my password");
    assert!(matches!(para.as_str(), "hit" | "miss"), "{para}");
    // Uncached requests of several consumers (each a limiter slot), streamed and not.
    for i in 0..6 {
        let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
        if i % 2 == 1 {
            body["stream"] = true.into();
        }
        let r = chat_as(&gw, &format!("team-{i}"), &body, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // The usage export flushes to the collector with its largest batch and buffer.
    let posts = sink.wait_for(20, |p| {
        p.iter()
            .filter(|p| p["status"] == 200)
            .map(|p| {
                p["otlp"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum::<usize>()
            >= 12
    });
    let events: usize = posts
        .iter()
        .filter(|p| p["status"] == 200)
        .map(|p| {
            p["otlp"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(events, 12, "every request's event arrived: {posts:?}");

    // No VM aborted: nothing in the log, the filter still answers on both workers, and its
    // own counters saw every request.
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.envoy_log();
    assert!(vm_failures(&log).is_empty(), "{:?}", vm_failures(&log));
    let stats = gw.stats();
    // Envoy's own Wasm stats (the filter's are `wasmcustom.*`): every VM still there, none
    // reloaded or failed.
    let wasm: Vec<&str> = stats.lines().filter(|l| l.starts_with("wasm.")).collect();
    assert_eq!(stat("wasm.wasm_vm_count"), vms, "{wasm:?}");
    for l in &wasm {
        if l.contains("reload") || l.contains("fail") || l.contains("crash") {
            assert!(l.ends_with(": 0"), "{l}");
        }
    }
    let prom = gw.prometheus();
    assert_eq!(
        prom_sum(&prom, "llm_gateway_requests_total", &[]),
        12.0,
        "{prom}"
    );
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cache_lookups_total",
            &[("result", "hit")]
        ),
        4.0
    );
    eprintln!(
        "bounds: VM memory {} bytes over the workers; wasm stats: {wasm:?}",
        prom_sum(&prom, "llm_gateway_vm_memory_bytes", &[])
    );
    for i in 0..4 {
        assert_eq!(ask(&format!("late-{i}"), "Still there?"), "miss");
    }
}

/// Just above a maximum, Envoy refuses the configuration with the field named, where the
/// value was once accepted and aborted every worker at the first flush
/// (`usage_export.batch_size: 1000000`: a 2 GB post buffer).
#[test]
fn a_size_above_its_maximum_is_refused_at_configuration() {
    let fake = Fake::start(None);
    let mut config = at_maxima();
    config["usage_export"]["batch_size"] = 1_000_000.into();
    let sink_port = free_port();
    let fake_port = fake.port;
    let refused = Gateway::try_start(
        &fake,
        Options {
            plugin_config: Some(config),
            workers: 1,
            edit: Some(Box::new(move |b: &mut Value| {
                let clusters = b["static_resources"]["clusters"]
                    .as_array_mut()
                    .expect("clusters");
                clusters.push(http_cluster("embedder", fake_port));
                clusters.push(http_cluster("usage", sink_port));
                clusters.push(grpc_cluster("ratelimit", free_port()));
            })),
            ..Options::default()
        },
    );
    let log = match refused {
        Ok(gw) => gw.envoy_log(),
        Err(log) => log,
    };
    assert!(
        log.contains(&format!(
            "usage_export.batch_size: must be at most {}",
            usage::MAX_BATCH_SIZE
        )),
        "{log}"
    );
}
