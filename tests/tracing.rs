//! Traces in real Envoy: spans posted to the stub collector (tests/collector), which parses
//! every post with the official OTLP protobuf types as an `ExportTraceServiceRequest`: one span
//! per request, after the GenAI semantic conventions, for chat, streamed chat, an Anthropic
//! client, a cache hit, a local refusal and a failover chain (a child span per attempt); the
//! caller's trace joined; the provider given a `traceparent` whose parent is the attempt's
//! span; sampling honoured; and a sink that is down harms no request, its drops counted.

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

struct Setup {
    gw: Gateway,
    sink: Collector,
    _down: Fake,
    _fake: Fake,
}

/// A gateway tracing to the collector (cluster `otel`, or a dead port when `sink_up` is
/// false) with `tracing` merged into its `tracing` section.
fn setup(tracing: Value, sink_up: bool) -> Setup {
    let fake = Fake::start(None);
    let down = Fake::start_with(None, &[("x-fake-status", "503")]);
    let sink = Collector::start(&[]);
    let sink_port = if sink_up { sink.port } else { free_port() };
    let mut t = json!({"export": {"cluster": "otel", "flush_interval_ms": 100, "max_retries": 0,
                                  "timeout_ms": 500}});
    if let (Some(o), Value::Object(e)) = (t.as_object_mut(), tracing) {
        o.extend(e);
    }
    let config = json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "claude": {"cluster": "backup", "format": "anthropic", "api_key_env": "BACKUP_API_KEY"},
            "down": {"cluster": "down", "api_key_env": "OPENAI_API_KEY"}
        },
        "routes": [
            {"name": "cached", "match": {"model": "cached-model"}, "to": {"provider": "openai", "model": "gpt-4o-mini"},
             "cache": {}},
            {"name": "chain", "match": {"model": "gpt-4.1"}, "to": {"provider": "down"},
             "fallback": {"cluster": "failover-down-openai", "to": [{"provider": "openai"}]}},
            {"name": "claude", "match": {"model": "claude-*"}, "models": ["claude-sonnet-4-5"], "to": {"provider": "claude"}}
        ],
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini"]},
        "consumers": [{"name": "team-a"}],
        "consumer_header": "x-team",
        "tracing": t,
        // Usage events to the same collector (OTLP logs): each names its request's span.
        "usage_export": {"cluster": "otel", "flush_interval_ms": 100},
    });
    let down_port = down.port;
    let opts = Options {
        plugin_config: Some(without_cooldown(config)),
        edit: Some(Box::new(move |b: &mut Value| {
            let clusters = b["static_resources"]["clusters"].as_array_mut().unwrap();
            let chain = chain_cluster(clusters, "failover-down-openai", &["down", "openai"]);
            clusters.push(chain);
            clusters.push(http_cluster("down", down_port));
            clusters.push(http_cluster("otel", sink_port));
        })),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);
    Setup {
        gw,
        sink,
        _down: down,
        _fake: fake,
    }
}

/// Every span the collector accepted (ids in hex), with its attributes by key.
fn spans(posts: &[Value]) -> Vec<(HashMap<String, Value>, Value)> {
    posts
        .iter()
        .filter(|p| p["path"] == "/v1/traces")
        .inspect(|p| {
            assert_eq!(
                p["error"],
                Value::Null,
                "the collector could not parse: {p}"
            )
        })
        .filter(|p| p["status"] == 200)
        .flat_map(|p| {
            p["otlp"]["resourceSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .map(|s| (support::usage::otlp_attributes(&s), s))
        .collect()
}

/// The spans of trace `trace_id`, waiting until there are `n`.
fn trace_of(sink: &Collector, trace_id: &str, n: usize) -> Vec<(HashMap<String, Value>, Value)> {
    let of = |posts: &[Value]| {
        spans(posts)
            .into_iter()
            .filter(|(_, s)| s["traceId"] == trace_id)
            .collect::<Vec<_>>()
    };
    let posts = sink.wait_for(10, |p| of(p).len() >= n);
    let got = of(&posts);
    assert_eq!(got.len(), n, "spans of {trace_id}: {got:?}");
    got
}

fn team(gw: &Gateway, body: &Value, extra: &[(&str, &str)]) -> Resp {
    chat_as(gw, "team-a", body, extra)
}

/// The trace id, span id and sampled flag of the request's access-log line.
fn logged(gw: &Gateway, request_id: &str) -> (String, String, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let lines = gw.access_log(1);
        if let Some(l) = lines.iter().find(|l| l["request_id"] == request_id) {
            break l.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for {request_id}: {lines:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let s = |k: &str| line[k].as_str().unwrap_or_default().to_string();
    (s("trace_id"), s("span_id"), s("trace_sampled"))
}

#[test]
fn a_callers_chat_is_a_genai_span_in_its_trace_and_the_provider_gets_the_attempt_span() {
    let s = setup(json!({"sampling_ratio": 0.0}), true);
    let tp = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}],
                      "max_tokens": 40, "temperature": 0.5, "n": 2});
    let r = team(
        &s.gw,
        &body,
        &[
            ("traceparent", &tp),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "trace-1"),
        ],
    );
    assert_eq!(r.status, 200);
    let got = trace_of(&s.sink, CALLER_TRACE, 2);
    let (req, attempt) = (&got[0], &got[1]);
    assert_eq!(
        req.1["parentSpanId"], CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(req.1["name"], "chat gpt-4o-mini");
    assert_eq!(req.1["kind"], "SPAN_KIND_SERVER");
    assert_eq!(req.1["traceState"], "congo=t61rcWkgMzE");
    let a = &req.0;
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.provider.name"], "openai");
    assert_eq!(a["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(a["gen_ai.request.max_tokens"], 40);
    assert_eq!(a["gen_ai.request.temperature"], 0.5);
    assert_eq!(a["gen_ai.request.choice.count"], 2);
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["stop", "stop"]));
    assert!(a["gen_ai.response.id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert!(a["gen_ai.response.model"].as_str().is_some());
    assert!(a["gen_ai.usage.input_tokens"].as_u64().unwrap() > 0);
    assert!(a["gen_ai.usage.output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(a["llm_gateway.consumer"], "team-a");
    assert_eq!(a["llm_gateway.outcome"], "ok");
    assert_eq!(a["llm_gateway.request_id"], "trace-1");
    assert!(a.contains_key("llm_gateway.cost_usd"));
    // The attempt: a client span under the request's, whose id the provider got as parent.
    assert_eq!(attempt.1["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(attempt.1["parentSpanId"], req.1["spanId"]);
    assert_eq!(attempt.0["http.response.status_code"], 200);
    let received = r.received_headers();
    let span = attempt.1["spanId"].as_str().unwrap();
    assert_eq!(
        received["traceparent"],
        format!("00-{CALLER_TRACE}-{span}-01")
    );
    assert_eq!(received["tracestate"], "congo=t61rcWkgMzE");
    // The access log names the trace and the request's span.
    let (trace_id, span_id, sampled) = logged(&s.gw, "trace-1");
    assert_eq!(trace_id, CALLER_TRACE);
    assert_eq!(span_id, req.1["spanId"].as_str().unwrap());
    assert_eq!(sampled, "true");
    // So does the usage event, as the log record's traceId and spanId.
    let record = |posts: &[Value]| -> Option<Value> {
        posts
            .iter()
            .filter(|p| p["path"] == "/v1/logs" && p["status"] == 200)
            .flat_map(|p| {
                p["otlp"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|r| r.to_string().contains("trace-1"))
    };
    let posts = s.sink.wait_for(10, |p| record(p).is_some());
    let rec = record(&posts).expect("the usage event");
    assert_eq!(rec["traceId"], CALLER_TRACE);
    assert_eq!(rec["spanId"], span_id);
    assert_eq!(rec["flags"], 1);
}

#[test]
fn streams_anthropic_clients_cache_hits_and_refusals_each_get_one_span() {
    let s = setup(
        json!({"content": {"routes": ["claude"], "max_bytes": 64}}),
        true,
    );
    // A streamed chat.
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let r = team(&s.gw, &body, &[("x-request-id", "stream-1")]);
    assert_eq!(r.status, 200);
    let (trace, _, sampled) = logged(&s.gw, "stream-1");
    assert_eq!(sampled, "true");
    let got = trace_of(&s.sink, &trace, 2);
    assert!(
        got[0].1.get("parentSpanId").is_none(),
        "a new trace: the request's span is its root"
    );
    assert_eq!(got[0].0["llm_gateway.stream"], true);
    assert!(got[0].0["gen_ai.usage.output_tokens"].as_u64().unwrap() > 0);
    assert!(got[0].0["llm_gateway.ttft_ms"].as_u64().is_some());
    assert_eq!(got[0].0["gen_ai.response.finish_reasons"], json!(["stop"]));

    // An Anthropic client, on a route that shows (bounded) content.
    let msg = json!({"model": "claude-sonnet-4-5", "max_tokens": 30,
                     "messages": [{"role": "user", "content": "Tell me about the sea, at length please."}]});
    let r = post(
        &s.gw.url("/v1/messages"),
        &[
            ("content-type", "application/json"),
            ("x-team", "team-a"),
            ("anthropic-version", "2023-06-01"),
            ("x-request-id", "anthropic-1"),
        ],
        msg.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (trace, _, _) = logged(&s.gw, "anthropic-1");
    let got = trace_of(&s.sink, &trace, 2);
    let a = &got[0].0;
    assert_eq!(a["gen_ai.provider.name"], "claude");
    assert_eq!(a["llm_gateway.endpoint"], "messages");
    assert_eq!(a["gen_ai.request.max_tokens"], 30);
    let input: Value = serde_json::from_str(a["gen_ai.input.messages"].as_str().unwrap()).unwrap();
    assert_eq!(
        input[0]["parts"][0]["content"],
        "Tell me about the sea, at length please."
    );
    let output: Value =
        serde_json::from_str(a["gen_ai.output.messages"].as_str().unwrap()).unwrap();
    let text = output[0]["parts"][0]["content"].as_str().unwrap();
    assert!(!text.is_empty() && text.len() <= 64, "bounded: {text:?}");
    assert_eq!(got[1].0["gen_ai.provider.name"], "claude");

    // A cache hit: one span, no attempt, nothing billed.
    let cached =
        json!({"model": "cached-model", "messages": [{"role": "user", "content": "Cache me"}]});
    assert_eq!(
        team(&s.gw, &cached, &[("x-request-id", "miss-1")]).status,
        200
    );
    let hit = team(&s.gw, &cached, &[("x-request-id", "hit-1")]);
    assert_eq!(hit.header("x-llm-cache"), Some("hit"));
    let (trace, _, _) = logged(&s.gw, "hit-1");
    let got = trace_of(&s.sink, &trace, 1);
    assert_eq!(got[0].0["llm_gateway.cache"], "hit");
    assert_eq!(got[0].0["llm_gateway.outcome"], "cache_hit");
    assert!(!got[0].0.contains_key("gen_ai.usage.input_tokens"));
    assert!(
        !got[0].0.contains_key("gen_ai.input.messages"),
        "that route shows no content"
    );

    // A local refusal: one span, an error.
    let r = post(
        &s.gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("x-team", "team-a"),
            ("x-request-id", "bad-1"),
        ],
        b"{not json",
    );
    assert_eq!(r.status, 400);
    let (trace, _, _) = logged(&s.gw, "bad-1");
    let got = trace_of(&s.sink, &trace, 1);
    assert_eq!(got[0].0["llm_gateway.outcome"], "bad_request");
    assert_eq!(got[0].0["error.type"], "bad_request");
    assert_eq!(got[0].1["status"]["code"], "STATUS_CODE_ERROR");
}

#[test]
fn a_failover_chain_has_a_child_span_per_attempt() {
    let s = setup(json!({}), true);
    let tp = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let body = json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}]});
    let r = team(
        &s.gw,
        &body,
        &[("traceparent", &tp), ("x-request-id", "chain-1")],
    );
    assert_eq!(r.status, 200);
    let got = trace_of(&s.sink, CALLER_TRACE, 3);
    let (req, first, second) = (&got[0], &got[1], &got[2]);
    assert_eq!(req.1["parentSpanId"], CALLER_SPAN);
    for (span, provider, outcome) in [(first, "down", "503"), (second, "openai", "200")] {
        assert_eq!(span.1["parentSpanId"], req.1["spanId"]);
        assert_eq!(span.0["gen_ai.provider.name"], provider);
        assert_eq!(span.0["llm_gateway.outcome"], outcome);
        let start: u64 = span.1["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let end: u64 = span.1["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(end >= start && start > 0);
    }
    assert_eq!(first.1["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(first.0["llm_gateway.attempt"], 1);
    assert_eq!(second.0["llm_gateway.attempt"], 2);
    // The provider that served got the second attempt's span as parent.
    let span = second.1["spanId"].as_str().unwrap();
    assert_eq!(
        r.received_headers()["traceparent"],
        format!("00-{CALLER_TRACE}-{span}-01")
    );
}

#[test]
fn sampling_is_honoured() {
    let s = setup(json!({"sampling_ratio": 0.0}), true);
    let hello = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    // New traces at ratio 0: none recorded, but the provider still gets a context.
    let r = team(&s.gw, &hello, &[("x-request-id", "unsampled-1")]);
    let tp = r.received_headers()["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let (trace, _, sampled) = logged(&s.gw, "unsampled-1");
    assert_eq!(sampled, "false");
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    // A caller's unsampled trace is followed; its sampled one is recorded.
    let off = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    let r = team(&s.gw, &hello, &[("traceparent", &off)]);
    assert!(r.received_headers()["traceparent"]
        .as_str()
        .unwrap()
        .ends_with("-00"));
    let on = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    team(&s.gw, &hello, &[("traceparent", on)]);
    trace_of(&s.sink, "0af7651916cd43dd8448eb211c80319c", 2);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let all = spans(&s.sink.received());
    assert!(
        all.iter()
            .all(|(_, sp)| sp["traceId"] == "0af7651916cd43dd8448eb211c80319c"),
        "only the sampled trace was exported: {all:?}"
    );
}

#[test]
fn a_sink_that_is_down_harms_no_request_and_its_drops_are_counted() {
    let s = setup(json!({}), false);
    let hello = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    for _ in 0..5 {
        assert_eq!(team(&s.gw, &hello, &[]).status, 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let prom = s.gw.prometheus();
        let dropped = prom_sum(
            &prom,
            "llm_gateway_trace_spans_dropped_total",
            &[("reason", "retries_exhausted")],
        );
        let failures = prom_sum(&prom, "llm_gateway_trace_export_failures_total", &[]);
        if dropped >= 10.0 {
            assert!(failures >= 1.0);
            assert_eq!(
                prom_sum(&prom, "llm_gateway_trace_spans_sent_total", &[]),
                0.0
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drops not counted: {dropped}\n{prom}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
