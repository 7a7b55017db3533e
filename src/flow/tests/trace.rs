//! Traces through the flow: the request's context (joined or new, sampled or not), the
//! provider's `traceparent`, the spans queued at the end and how they are posted.

use serde_json::{json, Value};

use super::support::*;
use crate::flow::vm::Vm;
use crate::flow::Step;
use crate::host::fake::FakeHost;
use crate::names::{metric, prop};

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn tracing(extra: Value) -> Value {
    let mut t = json!({"export": {"cluster": "otel", "flush_interval_ms": 1000}});
    if let (Some(o), Value::Object(e)) = (t.as_object_mut(), extra) {
        o.extend(e);
    }
    config_with(json!({ "tracing": t }))
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn flushed(vm: &mut Vm, h: &mut FakeHost) -> Vec<Value> {
    h.advance_ms(1000);
    vm.on_tick(h);
    posted_spans(h)
}

#[test]
fn a_callers_trace_is_joined_and_the_provider_gets_the_attempt_span() {
    let mut h = host(&post(
        "/v1/chat/completions",
        &[("traceparent", CALLER), ("tracestate", "vendor=x")],
    ));
    let mut vm = vm(&h, &tracing(json!({"sampling_ratio": 0.0})));
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}],
                      "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "seed": 7, "n": 2,
                      "response_format": {"type": "json_object"}});
    let ex = run(&vm, &mut h, &body, &completion("Hi!"));
    let ctx = &ex.trace.as_ref().unwrap().ctx;
    // Joined: the caller's trace, its sampled flag over the ratio of 0.
    assert_eq!(ctx.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(ctx.sampled);
    let sent = h.request_header("traceparent").unwrap();
    let attempt = hex::encode(ctx.attempt_span(1));
    assert_eq!(
        sent,
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{attempt}-01")
    );
    assert_eq!(
        h.request_header("tracestate").as_deref(),
        Some("vendor=x"),
        "passed on as sent"
    );
    // The access log's ids.
    assert_eq!(
        h.prop(prop::TRACE_ID).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(h.prop(prop::SPAN_ID), Some(hex::encode(ctx.span_id)));
    assert_eq!(h.prop(prop::TRACE_SAMPLED).as_deref(), Some("true"));

    let s = flushed(&mut vm, &mut h);
    let [req, att] = s.as_slice() else {
        panic!("a request span and its attempt: {s:?}");
    };
    assert_eq!(req["name"], "chat gpt-4o-mini");
    assert_eq!(req["kind"], 2);
    assert_eq!(req["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(req["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(req["traceState"], "vendor=x");
    for (k, v) in [
        ("gen_ai.operation.name", json!({"stringValue": "chat"})),
        ("gen_ai.provider.name", json!({"stringValue": "openai"})),
        (
            "gen_ai.request.model",
            json!({"stringValue": "gpt-4o-mini"}),
        ),
        (
            "gen_ai.response.model",
            json!({"stringValue": "gpt-4o-mini-2024-07-18"}),
        ),
        ("gen_ai.response.id", json!({"stringValue": "chatcmpl-1"})),
        (
            "gen_ai.response.finish_reasons",
            json!({"arrayValue": {"values": [{"stringValue": "stop"}]}}),
        ),
        ("gen_ai.request.max_tokens", json!({"intValue": "50"})),
        ("gen_ai.request.temperature", json!({"doubleValue": 0.2})),
        ("gen_ai.request.top_p", json!({"doubleValue": 0.9})),
        ("gen_ai.request.seed", json!({"intValue": "7"})),
        ("gen_ai.request.choice.count", json!({"intValue": "2"})),
        ("gen_ai.output.type", json!({"stringValue": "json"})),
        ("gen_ai.usage.input_tokens", json!({"intValue": "8"})),
        ("gen_ai.usage.output_tokens", json!({"intValue": "5"})),
        ("llm_gateway.consumer", json!({"stringValue": "team-a"})),
        ("llm_gateway.outcome", json!({"stringValue": "ok"})),
        ("llm_gateway.request_id", json!({"stringValue": "req-1"})),
    ] {
        assert_eq!(attr(req, k), Some(&v), "{k}");
    }
    assert!(
        attr(req, "gen_ai.input.messages").is_none(),
        "no content unless the route opts in"
    );
    assert!(req.get("status").is_none(), "a success has no error status");
    assert_eq!(att["kind"], 3);
    assert_eq!(att["spanId"], attempt);
    assert_eq!(att["parentSpanId"], req["spanId"]);
    assert_eq!(
        attr(att, "http.response.status_code"),
        Some(&json!({"intValue": "200"}))
    );
    assert_eq!(h.metric_value(metric::SPANS_BUFFERED), 2);
}

#[test]
fn a_new_trace_follows_the_sampling_ratio_and_an_unsampled_one_is_still_propagated() {
    // Ratio 0: nothing recorded, but the provider still gets a (not sampled) context.
    let mut h = host(&chat());
    let mut vm0 = vm(&h, &tracing(json!({"sampling_ratio": 0.0})));
    let ex = run(&vm0, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let ctx = &ex.trace.as_ref().unwrap().ctx;
    assert!(!ctx.sampled && ctx.parent.is_none());
    let tp = h.request_header("traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{}-", ctx.trace_hex())) && tp.ends_with("-00"),
        "{tp}"
    );
    assert_eq!(h.prop(prop::TRACE_SAMPLED).as_deref(), Some("false"));
    assert!(flushed(&mut vm0, &mut h).is_empty());

    // A caller that says "not sampled" is followed even at ratio 1.
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let mut h = host(&post("/v1/chat/completions", &[("traceparent", unsampled)]));
    let mut vm1 = vm(&h, &tracing(json!({})));
    run(&vm1, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    assert!(h.request_header("traceparent").unwrap().ends_with("-00"));
    assert!(flushed(&mut vm1, &mut h).is_empty());

    // Ratio 1, no caller context: a new root span.
    let mut h = host(&chat());
    let mut vm2 = vm(&h, &tracing(json!({})));
    run(&vm2, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let s = flushed(&mut vm2, &mut h);
    assert_eq!(s.len(), 2);
    assert!(s[0].get("parentSpanId").is_none());

    // An invalid traceparent starts a new trace (and its tracestate is not kept).
    let mut h = host(&post(
        "/v1/chat/completions",
        &[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "a=b"),
        ],
    ));
    let ex = run(&vm2, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let ctx = &ex.trace.as_ref().unwrap().ctx;
    assert!(ctx.parent.is_none() && ctx.tracestate.is_none());
}

#[test]
fn a_ratio_samples_about_that_share_of_new_traces() {
    let mut h = host(&[]);
    let v = vm(&h, &tracing(json!({"sampling_ratio": 0.25})));
    let mut sampled = 0;
    for i in 0..2000u64 {
        h = next(&h, &chat());
        // Random-looking ids: the decision reads the trace id's low bits.
        h.bits = [
            i,
            crate::trace::tests::spread(i),
            crate::trace::tests::spread(i + 7),
        ]
        .into();
        let ex = run(&v, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
        sampled += usize::from(ex.trace.as_ref().unwrap().ctx.sampled);
    }
    assert!((400..600).contains(&sampled), "{sampled} of 2000 at 0.25");
}

#[test]
fn a_local_refusal_has_a_span_and_no_attempt() {
    let mut headers = chat();
    headers.retain(|(k, _)| *k != "authorization");
    headers.push(("authorization", "Bearer sk-stranger"));
    let mut h = host(&headers);
    let mut vm = vm(&h, &tracing(json!({})));
    let mut ex = vm.exchange(1).unwrap();
    let step = ex.on_request_headers(&mut h, false);
    assert!(matches!(step, Step::Reply(_)));
    ex.finish(&mut h);
    let s = flushed(&mut vm, &mut h);
    let [req] = s.as_slice() else { panic!("{s:?}") };
    assert_eq!(req["name"], "chat");
    assert_eq!(
        attr(req, "llm_gateway.outcome"),
        Some(&json!({"stringValue": "unauthorized"}))
    );
    assert_eq!(
        attr(req, "error.type"),
        Some(&json!({"stringValue": "unauthorized"}))
    );
    assert_eq!(req["status"]["code"], 2);
    assert!(
        attr(req, "gen_ai.usage.input_tokens").is_none(),
        "nothing billed"
    );
}

#[test]
fn a_route_that_opts_in_shows_bounded_content() {
    let mut h = host(&chat());
    let mut vm = vm(
        &h,
        &tracing(json!({"content": {"routes": ["mini"], "max_bytes": 8}})),
    );
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]});
    run(&vm, &mut h, &body, &completion("Hi! How are you?"));
    let s = flushed(&mut vm, &mut h);
    let input: Value = serde_json::from_str(
        attr(&s[0], "gen_ai.input.messages").unwrap()["stringValue"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        input,
        json!([{"role": "system", "parts": [{"type": "text", "content": "Be brief"}]},
                             {"role": "user", "parts": [{"type": "text", "content": ""}]}])
    );
    let output: Value = serde_json::from_str(
        attr(&s[0], "gen_ai.output.messages").unwrap()["stringValue"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        output,
        json!([{"role": "assistant", "parts": [{"type": "text", "content": "Hi! How "}], "finish_reason": "stop"}])
    );
    // Another route shows none.
    let mut h = next(&h, &chat());
    h.callouts.clear();
    run(&vm, &mut h, &hello("fast"), &completion("Hi!"));
    let s = flushed(&mut vm, &mut h);
    assert!(attr(&s[0], "gen_ai.input.messages").is_none());
    assert!(attr(&s[0], "gen_ai.output.messages").is_none());
}

#[test]
fn a_full_buffer_drops_a_requests_spans_together_and_counts_them() {
    let mut t = tracing(json!({}));
    t["tracing"]["export"]["max_buffered_events"] = json!(3);
    t["tracing"]["export"]["batch_size"] = json!(3);
    let mut h = host(&chat());
    let vm = vm(&h, &t);
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let mut h = next(&h, &chat());
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let dropped = crate::metrics::stat_name(
        metric::SPANS_DROPPED,
        &[(metric::TAG_REASON, "buffer_full")],
    );
    assert_eq!(
        h.metric_value(&dropped),
        2,
        "both spans of the second request"
    );
}

#[test]
fn tracing_is_configured_strictly() {
    let h = host(&[]);
    for (t, msg) in [
        (
            json!({"export": {"cluster": "otel", "format": "json"}}),
            "tracing.export.format: must be otlp",
        ),
        (
            json!({"export": {"cluster": "otel"}, "sampling_ratio": 1.5}),
            "tracing.sampling_ratio",
        ),
        (
            json!({"export": {"cluster": "otel"}, "content": {"routes": ["nope"]}}),
            "tracing.content.routes[0]",
        ),
        (
            json!({"export": {"cluster": "otel"}, "content": {"routes": ["mini"], "max_bytes": 70000}}),
            "tracing.content.max_bytes",
        ),
        (
            json!({"export": {"cluster": "otel"}, "sampler": 1}),
            "unknown field",
        ),
    ] {
        let cfg = config_with(json!({ "tracing": t }));
        let err = Vm::configure(&h, cfg.to_string().as_bytes()).err().unwrap();
        assert!(err.contains(msg), "{err}");
    }
}

#[test]
fn a_failover_chain_has_a_child_span_per_attempt_and_each_provider_its_own_parent() {
    use crate::flow::attempt::AttemptFilter;
    let mut g = host(&post("/v1/chat/completions", &[("traceparent", CALLER)]));
    let mut vm = vm(&g, &tracing(json!({})));
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut g, &hello("gpt-4.1")), Step::Continue);
    let ctx = ex.trace.as_ref().unwrap().ctx.clone();
    // Each attempt runs in the upstream filter, on the same filter state.
    let mut sent = Vec::new();
    for (n, status) in [(1u64, 503u16), (2, 200)] {
        let mut h = host(&[]);
        h.request_headers = g.request_headers.clone();
        h.request_body = g.request_body.clone();
        h.properties = g.properties.clone();
        h.now_ns.set(g.now_ns.get());
        h.properties.insert(
            "upstream.request_attempt_count".into(),
            n.to_le_bytes().to_vec(),
        );
        let mut a = AttemptFilter::default();
        assert_eq!(a.on_request_headers(&mut h), Step::Continue);
        sent.push(h.request_header("traceparent").unwrap());
        h.advance_ms(40);
        h.respond(status, &JSON, &completion("Hi!"));
        a.on_response_headers(&mut h, false);
        a.on_done(&mut h);
        g.properties = h.properties.clone();
        g.now_ns.set(h.now_ns.get());
    }
    for (n, tp) in (1u64..).zip(&sent) {
        let span = hex::encode(ctx.attempt_span(n));
        assert_eq!(
            tp,
            &format!("00-{}-{span}-01", ctx.trace_hex()),
            "attempt {n}"
        );
    }
    answer(&mut ex, &mut g, 200, &JSON, &completion("Hi!"));
    ex.finish(&mut g);
    let s = flushed(&mut vm, &mut g);
    let [req, first, second] = s.as_slice() else {
        panic!("the request and two attempts: {s:?}");
    };
    assert_eq!(req["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(
        attr(req, "gen_ai.provider.name"),
        Some(&json!({"stringValue": "claude"}))
    );
    for (span, n, provider, outcome) in [(first, 1, "openai", "503"), (second, 2, "claude", "200")]
    {
        assert_eq!(span["parentSpanId"], req["spanId"]);
        assert_eq!(span["spanId"], hex::encode(ctx.attempt_span(n)));
        assert_eq!(
            attr(span, "gen_ai.provider.name"),
            Some(&json!({"stringValue": provider}))
        );
        assert_eq!(
            attr(span, "llm_gateway.outcome"),
            Some(&json!({"stringValue": outcome}))
        );
        let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert_eq!(end - start, 40_000_000, "attempt {n} ran 40 ms");
    }
    assert_eq!(
        attr(second, "gen_ai.request.model"),
        Some(&json!({"stringValue": "claude-sonnet-4-5"}))
    );
    assert_eq!(first["status"]["code"], 2, "the failed attempt is an error");
    assert!(second.get("status").is_none());
}

#[test]
fn the_usage_event_names_the_requests_trace_and_span() {
    let mut cfg = tracing(json!({}));
    cfg["usage_export"] = json!({"cluster": "usage", "format": "json", "flush_interval_ms": 1000});
    let mut h = host(&post("/v1/chat/completions", &[("traceparent", CALLER)]));
    let mut vm = vm(&h, &cfg);
    let ex = run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let span = hex::encode(ex.trace.as_ref().unwrap().ctx.span_id);
    h.advance_ms(1000);
    vm.on_tick(&mut h);
    let post = h
        .callouts
        .iter()
        .find(|c| c.cluster == "usage")
        .expect("usage posted");
    let e = &parsed(&post.body)[0];
    assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e["span_id"], span);
}
