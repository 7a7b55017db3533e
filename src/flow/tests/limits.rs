//! Local limits (429 in the client's API's shape, with `retry-after` and `x-ratelimit-*`) and
//! the global rate limit service (the gRPC callout, its answers and its failures).

use prost::Message;
use serde_json::{json, Value};

use super::support::*;
use crate::flow::{self, Exchange, Step};
use crate::host::fake::FakeHost;
use crate::metrics::stat_name;
use crate::names::metric;
use crate::rls::{
    self, Code, DescriptorStatus, RateLimit, RateLimitRequest, RateLimitResponse, Unit,
};

fn limited(limits: Value) -> Value {
    config_with(json!({ "limits": limits }))
}

fn rejections(reason: &str) -> String {
    stat_name(
        metric::RATELIMIT_REJECTIONS,
        &[
            (metric::TAG_CONSUMER, "team-a"),
            (metric::TAG_REASON, reason),
        ],
    )
}

const RPM_MESSAGE: &str = "Rate limit reached for team-a on requests per minute (RPM): Limit 1, Remaining 0, Requested 1. Please try again in 1m0s.";

/// One request per minute; the first request used it.
fn one_rpm_used() -> (crate::flow::vm::Vm, FakeHost) {
    let mut h = host(&chat());
    let vm = vm(
        &h,
        &limited(json!({"default": {"rpm": 1}, "max_tracked": 16})),
    );
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    assert_eq!(
        h.response_header("x-ratelimit-limit-requests").as_deref(),
        Some("1")
    );
    assert_eq!(
        h.response_header("x-ratelimit-remaining-requests")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        h.response_header("x-ratelimit-reset-requests").as_deref(),
        Some("1m0s")
    );
    (vm, h)
}

fn limit_headers(r: &crate::flow::LocalReply) -> Vec<(&'static str, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ratelimit-") || *k == "retry-after")
        .cloned()
        .collect()
}

fn rpm_headers() -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit-requests", "1".to_string()),
        ("x-ratelimit-remaining-requests", "0".to_string()),
        ("x-ratelimit-reset-requests", "1m0s".to_string()),
        ("retry-after", "60".to_string()),
    ]
}

#[test]
fn over_the_local_limit_an_openai_client_gets_429_in_openai_shape() {
    let (vm, h1) = one_rpm_used();
    let mut h = next(&h1, &chat());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send(&mut ex, &mut h, &hello("gpt-4o-mini")));
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "x-llm-gateway-request-id"), Some("req-1"));
    assert_eq!(limit_headers(&r), rpm_headers());
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": RPM_MESSAGE, "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    );
    assert_eq!(h.request_header("x-llm-gateway-cluster"), None);
    ex.finish(&mut h);
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4o-mini",
            "none",
            "team-a",
            "rate_limited"
        )]
    );
    assert_eq!(h.metric_value(&rejections("rpm")), 1);
}

#[test]
fn over_the_local_limit_an_anthropic_client_gets_429_in_messages_shape() {
    let (vm, h1) = one_rpm_used();
    let mut h = next(&h1, &messages());
    let mut ex = vm.exchange(1).unwrap();
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]});
    let r = reply(send(&mut ex, &mut h, &body));
    assert_eq!(r.status, 429);
    assert_eq!(limit_headers(&r), rpm_headers());
    assert_eq!(
        parsed(&r.body),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": RPM_MESSAGE}})
    );
}

#[test]
fn a_request_larger_than_the_token_limit_is_refused_without_retry_after() {
    let mut h = host(&chat());
    let vm = vm(
        &h,
        &limited(json!({"default": {"tpm": 1000}, "max_tracked": 16})),
    );
    let mut ex = vm.exchange(1).unwrap();
    let mut body = hello("gpt-4o-mini");
    body["max_tokens"] = json!(5000);
    let r = reply(send(&mut ex, &mut h, &body));
    assert_eq!(r.status, 429);
    assert_eq!(
        limit_headers(&r),
        vec![
            ("x-ratelimit-limit-tokens", "1000".to_string()),
            ("x-ratelimit-remaining-tokens", "1000".to_string()),
            ("x-ratelimit-reset-tokens", "0ms".to_string()),
        ]
    );
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "Request too large for team-a on tokens per minute (TPM): Limit 1000, Requested 5008. Reduce the prompt or max_tokens.",
                         "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})
    );
}

fn global(mode: &str) -> Value {
    limited(json!({"global": {"cluster": "ratelimit", "timeout_ms": 100, "failure_mode": mode}}))
}

/// Send a request that waits for the global service; the token of its call.
fn pending(ex: &mut Exchange, h: &mut FakeHost) -> u32 {
    assert_eq!(send(ex, h, &hello("gpt-4o-mini")), Step::Pause);
    let call = h.callouts.last().unwrap();
    assert_eq!(call.kind, "grpc");
    call.token
}

fn status(code: Code, limit: u32, unit: Unit, remaining: u32, reset_s: i64) -> DescriptorStatus {
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            requests_per_unit: limit,
            unit: unit as i32,
            name: String::new(),
        }),
        limit_remaining: remaining,
        duration_until_reset: Some(prost_types::Duration {
            seconds: reset_s,
            nanos: 0,
        }),
    }
}

/// The service answers `statuses` (gRPC OK).
fn verdict(
    ex: &mut Exchange,
    h: &mut FakeHost,
    token: u32,
    overall: Code,
    statuses: Vec<DescriptorStatus>,
) -> Step {
    h.grpc_message = RateLimitResponse {
        overall_code: overall as i32,
        statuses,
    }
    .encode_to_vec();
    let n = h.grpc_message.len();
    ex.on_global_answer(h, token, 0, n)
}

#[test]
fn the_global_service_is_asked_and_its_ok_resumes_the_request() {
    let mut h = host(&chat());
    let vm = vm(&h, &global("open"));
    let mut ex = vm.exchange(1).unwrap();
    let token = pending(&mut ex, &mut h);
    let [call] = h.callouts.as_slice() else {
        panic!("one callout: {:?}", h.callouts);
    };
    assert_eq!(call.cluster, "ratelimit");
    assert_eq!(
        call.path,
        "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
    );
    assert_eq!(call.timeout_ms, 100);
    // Requests and the counted prompt, for the consumer and for the consumer and model label.
    assert_eq!(
        call.body,
        rls::request("llm-gateway", "team-a", Some("gpt-4o-mini"), 1, 8, None).0
    );
    let sent = RateLimitRequest::decode(call.body.as_slice()).unwrap();
    assert_eq!(sent.domain, "llm-gateway");
    let hits: Vec<_> = sent.descriptors.iter().map(|d| d.hits_addend).collect();
    assert_eq!(hits, vec![Some(1), Some(8), Some(1), Some(8)]);
    // Routed while it waits, but held.
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    let statuses = vec![
        status(Code::Ok, 100, Unit::Minute, 99, 60),
        status(Code::Ok, 10_000, Unit::Minute, 9_992, 60),
    ];
    let step = verdict(&mut ex, &mut h, token, Code::Ok, statuses);
    assert_eq!(step, Step::Continue);
    flow::resume(&mut h, step);
    assert_eq!(h.resumed, 1);
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    for (name, value) in [
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "99"),
        ("x-ratelimit-reset-requests", "1m0s"),
        ("x-ratelimit-limit-tokens", "10000"),
        ("x-ratelimit-remaining-tokens", "9992"),
        ("x-ratelimit-reset-tokens", "1m0s"),
    ] {
        assert_eq!(h.response_header(name).as_deref(), Some(value), "{name}");
    }
}

#[test]
fn over_the_global_limit_the_request_is_refused_with_429() {
    let mut h = host(&chat());
    let vm = vm(&h, &global("open"));
    let mut ex = vm.exchange(1).unwrap();
    let token = pending(&mut ex, &mut h);
    let step = verdict(
        &mut ex,
        &mut h,
        token,
        Code::OverLimit,
        vec![status(Code::OverLimit, 10, Unit::Minute, 0, 30)],
    );
    flow::resume(&mut h, step);
    assert_eq!(h.resumed, 0);
    let [r] = h.replies.as_slice() else {
        panic!("one reply: {:?}", h.replies);
    };
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("30s"));
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Rate limit reached for team-a on requests per minute (global): Limit 10. Please try again in 30s.",
                         "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    );
    ex.finish(&mut h);
    assert_eq!(h.metric_value(&rejections("global")), 1);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("rate_limited"));
}

fn global_failures(reason: &str) -> String {
    stat_name(metric::GLOBAL_FAILURES, &[(metric::TAG_REASON, reason)])
}

#[test]
fn a_failed_global_service_lets_the_request_through_when_open() {
    let mut h = host(&chat());
    let vm = vm(&h, &global("open"));
    let mut ex = vm.exchange(1).unwrap();
    let token = pending(&mut ex, &mut h);
    // UNAVAILABLE at once: the service could not be reached.
    let step = ex.on_global_answer(&mut h, token, 14, 0);
    assert_eq!(step, Step::Continue);
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("ok"));
    assert_eq!(h.metric_value(&global_failures("unavailable")), 1);
}

#[test]
fn a_global_service_that_times_out_refuses_the_request_when_closed_and_gives_back_the_local_slot() {
    let mut cfg = global("closed");
    cfg["limits"]["default"] = json!({"rpm": 1});
    cfg["limits"]["max_tracked"] = json!(16);
    let mut h = host(&chat());
    let vm = vm(&h, &cfg);
    let mut ex = vm.exchange(1).unwrap();
    let token = pending(&mut ex, &mut h);
    h.advance_ms(95);
    let r = reply(ex.on_global_answer(&mut h, token, 14, 0));
    assert_eq!(r.status, 503);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "The rate limit service is unavailable; the request was not sent. Please retry.",
                         "type": "server_error", "param": null, "code": "rate_limit_service_unavailable"}})
    );
    ex.finish(&mut h);
    assert_eq!(h.metric_value(&global_failures("timeout")), 1);
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4o-mini",
            "openai",
            "team-a",
            "ratelimit_unavailable"
        )]
    );
    // The one request a minute was given back: the next request is admitted locally.
    let mut h2 = next(&h, &chat());
    let mut ex = vm.exchange(1).unwrap();
    pending(&mut ex, &mut h2);
    assert!(h2.replies.is_empty());
}

#[test]
fn a_global_service_that_cannot_be_called_refuses_at_once_when_closed() {
    let mut h = host(&chat());
    let vm = vm(&h, &global("closed"));
    h.refuse_callouts = true;
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send(&mut ex, &mut h, &hello("gpt-4o-mini")));
    assert_eq!(r.status, 503);
    assert_eq!(
        parsed(&r.body)["error"]["code"],
        "rate_limit_service_unavailable"
    );
    ex.finish(&mut h);
    assert_eq!(h.metric_value(&global_failures("unavailable")), 1);
}

#[test]
fn a_traced_request_shows_its_call_to_the_global_service_as_a_span_event() {
    let mut cfg = global("open");
    cfg["tracing"] = json!({"export": {"cluster": "otel", "flush_interval_ms": 1}});
    let mut h = host(&chat());
    let mut vm = vm(&h, &cfg);
    let mut ex = vm.exchange(1).unwrap();
    let token = pending(&mut ex, &mut h);
    h.advance_ms(7);
    let step = ex.on_global_answer(&mut h, token, 14, 0);
    assert_eq!(step, Step::Continue);
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    ex.finish(&mut h);
    h.advance_ms(1);
    vm.on_tick(&mut h);
    let spans = posted_spans(&h);
    let event = &spans[0]["events"][0];
    assert_eq!(event["name"], "llm_gateway.rate_limit.global");
    assert_eq!(
        event_attr(event, "llm_gateway.result"),
        Some(json!({"stringValue": "unavailable"}))
    );
    assert_eq!(
        event_attr(event, "llm_gateway.duration_us"),
        Some(json!({"intValue": "7000"}))
    );
}
