//! Stage 4: every way a request ends, and what it reports (properties, metrics), exactly once.

use std::collections::BTreeMap;

use serde_json::json;

use super::support::*;
use crate::failover::{Journal, Outcome};
use crate::flow::vm::Vm;
use crate::flow::{Exchange, Step};
use crate::host::fake::FakeHost;
use crate::metrics::stat_name;
use crate::names::metric;

fn base(model: &str, extra: (&'static str, &'static str)) -> String {
    stat_name(
        extra.0,
        &[
            (metric::TAG_MODEL, model),
            (metric::TAG_PROVIDER, "openai"),
            (metric::TAG_CONSUMER, "team-a"),
            (metric::TAG_TOKEN_TYPE, extra.1),
        ],
    )
}

#[test]
fn an_answered_request_writes_its_usage_properties_and_metrics() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", "req-openai-1"),
    ];
    answer(&mut ex, &mut h, 200, &headers, &completion("Hi!"));
    ex.finish(&mut h);
    let expected: BTreeMap<String, Vec<u8>> = [
        ("llm.consumer", "team-a"),
        ("llm.request_model", "gpt-4o-mini"),
        ("llm.upstream_model", "gpt-4o-mini"),
        ("llm.response_model", "gpt-4o-mini-2024-07-18"),
        ("llm.provider", "openai"),
        ("llm.provider_request_id", "req-openai-1"),
        ("llm.response_id", "chatcmpl-1"),
        ("llm.endpoint", "chat.completions"),
        ("llm.stream", "false"),
        ("llm.outcome", "ok"),
        ("llm.usage_estimated", "false"),
        ("llm.prompt_tokens", "8"),
        ("llm.completion_tokens", "5"),
        ("llm.total_tokens", "13"),
        ("llm.cached_tokens", "0"),
        ("llm.reasoning_tokens", "0"),
        // gpt-4o-mini: 8 × $0.15 + 5 × $0.60 per million tokens.
        ("llm.cost_usd", "0.0000042"),
        ("llm.counted_prompt_tokens", "8"),
        ("llm.counted_prompt_estimated", "false"),
        ("llm.gateway_us", "0"),
        ("llm.tokenize_us", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(h.properties, expected);
    let per_model = stat_name(
        metric::DURATION,
        &[
            (metric::TAG_MODEL, "gpt-4o-mini"),
            (metric::TAG_PROVIDER, "openai"),
        ],
    );
    let cost = stat_name(
        metric::COST,
        &[
            (metric::TAG_MODEL, "gpt-4o-mini"),
            (metric::TAG_PROVIDER, "openai"),
            (metric::TAG_CONSUMER, "team-a"),
        ],
    );
    let expected: BTreeMap<String, i64> = [
        (requests_metric("gpt-4o-mini", "openai", "team-a", "ok"), 1),
        (metric::FILTER_TIME.to_string(), 0),
        (base("gpt-4o-mini", (metric::TOKENS, "input")), 8),
        (base("gpt-4o-mini", (metric::TOKENS, "output")), 5),
        (base("gpt-4o-mini", (metric::TOKEN_USAGE, "input")), 8),
        (base("gpt-4o-mini", (metric::TOKEN_USAGE, "output")), 5),
        (cost, 4200),
        (per_model, 0),
        (metric::VM_MEMORY.to_string(), 1 << 20),
    ]
    .into_iter()
    .collect();
    assert_eq!(h.metrics, expected);
    assert_eq!(h.updates.len(), 9);
}

#[test]
fn a_provider_error_passes_and_bills_nothing() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    let error = br#"{"error":{"message":"The server had an error","type":"server_error"}}"#;
    answer(&mut ex, &mut h, 500, &JSON, error);
    assert_eq!(h.response_header(":status").as_deref(), Some("500"));
    assert_eq!(h.response_body, error.to_vec());
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("upstream_error"));
    assert_eq!(h.prop("llm.total_tokens").as_deref(), Some("0"));
    assert_eq!(h.prop("llm.cost_usd").as_deref(), Some("0"));
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4o-mini",
            "openai",
            "team-a",
            "upstream_error"
        )]
    );
    assert!(!h.metrics.keys().any(|k| k.starts_with(metric::TOKENS)));
}

/// Envoy answers for the provider with `status` and `details`: the flow's error replaces it.
fn envoy_error(
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    status: u16,
    details: &str,
) -> FakeHost {
    let mut h = host(headers);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, body), Step::Continue);
    h.properties
        .insert("response.code_details".into(), details.as_bytes().to_vec());
    let text = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";
    h.respond(
        status,
        &[("content-type", "text/plain"), ("content-length", "95")],
        text,
    );
    assert_eq!(ex.on_response_headers(&mut h), Step::Continue);
    // The replacement goes out at the end: earlier pieces are emptied.
    assert_eq!(ex.on_response_body(&mut h, 40, false), Step::Continue);
    assert_eq!(h.response_body, text[40..].to_vec());
    let n = h.response_body.len();
    assert_eq!(ex.on_response_body(&mut h, n, true), Step::Continue);
    ex.finish(&mut h);
    h
}

#[test]
fn an_error_envoy_made_is_replaced_by_a_json_error() {
    let details = "upstream_reset_before_response_started{connection_termination}";
    let h = envoy_error(&chat(), &hello("gpt-4o-mini"), 503, details);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
    assert_eq!(
        h.response_header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(h.response_header("content-length"), None);
    assert_eq!(
        parsed(&h.response_body),
        json!({"error": {"message": "The provider closed the connection before answering. Please retry later.",
                         "type": "server_error", "param": null, "code": "provider_error"}})
    );
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("upstream_error"));
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4o-mini",
            "openai",
            "team-a",
            "upstream_error"
        )]
    );
}

#[test]
fn an_envoy_timeout_reaches_an_anthropic_client_in_its_shape() {
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]});
    let h = envoy_error(&messages(), &body, 504, "upstream_response_timeout");
    assert_eq!(h.response_header(":status").as_deref(), Some("504"));
    assert_eq!(
        parsed(&h.response_body),
        json!({"type": "error", "error": {"type": "api_error",
                                          "message": "The provider did not answer in time. Please retry later."}})
    );
}

#[test]
fn a_stream_cut_before_done_is_incomplete_and_estimated() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    assert_eq!(send(&mut ex, &mut h, &body), Step::Continue);
    // Only the first event came: no finish chunk, no usage, no [DONE].
    let all = stream("Hello there", false, false);
    let first = &all[..all.windows(2).position(|w| w == b"\n\n").unwrap() + 2];
    answer(&mut ex, &mut h, 200, &SSE, first);
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("stream_incomplete"));
    assert_eq!(h.prop("llm.usage_estimated").as_deref(), Some("true"));
    assert_eq!(h.prop("llm.prompt_tokens").as_deref(), Some("8"));
    assert_eq!(h.prop("llm.completion_tokens").as_deref(), Some("2"));
    assert_eq!(h.prop("llm.ttft_ms").as_deref(), Some("0"));
    let estimated = stat_name(
        metric::ESTIMATED,
        &[
            (metric::TAG_MODEL, "gpt-4o-mini"),
            (metric::TAG_PROVIDER, "openai"),
            (metric::TAG_CONSUMER, "team-a"),
        ],
    );
    assert_eq!(h.metric_value(&estimated), 1);
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4o-mini",
            "openai",
            "team-a",
            "stream_incomplete"
        )]
    );
}

#[test]
fn a_client_gone_before_any_answer_is_no_response() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    h.properties
        .insert("response.code".into(), 0u64.to_le_bytes().to_vec());
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("no_response"));
    assert_eq!(h.prop("llm.total_tokens").as_deref(), Some("0"));
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4o-mini",
            "openai",
            "team-a",
            "no_response"
        )]
    );
}

#[test]
fn a_local_reply_reports_its_outcome_and_no_tokens() {
    let mut h = host(&chat());
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send(&mut ex, &mut h, &hello("llama-3")));
    assert_eq!(r.status, 404);
    ex.finish(&mut h);
    let set: Vec<&str> = h.set_properties.iter().map(String::as_str).collect();
    assert_eq!(
        set,
        vec![
            "llm.consumer",
            "llm.request_model",
            "llm.endpoint",
            "llm.stream",
            "llm.outcome",
            "llm.usage_estimated",
            "llm.gateway_us",
        ]
    );
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("no_route"));
    let expected: BTreeMap<String, i64> = [
        (requests_metric("none", "none", "team-a", "no_route"), 1),
        (metric::FILTER_TIME.to_string(), 0),
        (metric::VM_MEMORY.to_string(), 1 << 20),
    ]
    .into_iter()
    .collect();
    assert_eq!(h.metrics, expected);
}

/// The journal as the attempt filter leaves it.
fn journal(attempts: &[(&str, u32)]) -> Vec<u8> {
    let mut j = Journal::default();
    for (i, (provider, status)) in attempts.iter().enumerate() {
        j.record(i as u64 + 1, provider, &Outcome::Status(*status));
    }
    j.encode().into_bytes()
}

fn chain(h: &mut FakeHost) -> (Vm, Exchange) {
    let vm = vm(h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, h, &hello("gpt-4.1")), Step::Continue);
    (vm, ex)
}

#[test]
fn a_chain_whose_every_provider_failed_answers_one_clear_error() {
    let mut h = host(&chat());
    let (_vm, mut ex) = chain(&mut h);
    h.properties.insert(
        "llm.journal".into(),
        journal(&[("openai", 503), ("claude", 529)]),
    );
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    answer(
        &mut ex,
        &mut h,
        529,
        &JSON,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!(h.response_header(":status").as_deref(), Some("503"));
    assert_eq!(
        parsed(&h.response_body),
        json!({"error": {"message": "All 2 providers failed (openai: HTTP 503; claude: HTTP 529). Please retry later.",
                         "type": "server_error", "param": null, "code": "providers_unavailable"}})
    );
    ex.finish(&mut h);
    assert_eq!(
        h.prop("llm.outcome").as_deref(),
        Some("providers_unavailable")
    );
    assert_eq!(h.prop("llm.provider").as_deref(), Some("claude"));
    assert_eq!(h.prop("llm.attempts").as_deref(), Some("2"));
    assert_eq!(h.prop("llm.failover").as_deref(), Some("openai:503"));
    let failovers = stat_name(
        metric::FAILOVERS,
        &[
            (metric::TAG_PROVIDER, "openai"),
            (metric::TAG_REASON, "503"),
        ],
    );
    assert_eq!(h.metric_value(&failovers), 1);
    assert_eq!(
        counted(&h),
        vec![requests_metric(
            "gpt-4.1",
            "claude",
            "team-a",
            "providers_unavailable"
        )]
    );
}

#[test]
fn a_chain_served_by_its_second_provider_reports_the_failover() {
    let mut h = host(&chat());
    let (_vm, mut ex) = chain(&mut h);
    h.properties.insert(
        "llm.journal".into(),
        journal(&[("openai", 429), ("claude", 200)]),
    );
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    assert_eq!(h.response_header(":status").as_deref(), Some("200"));
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("ok"));
    assert_eq!(h.prop("llm.provider").as_deref(), Some("claude"));
    assert_eq!(h.prop("llm.attempts").as_deref(), Some("2"));
    assert_eq!(h.prop("llm.failover").as_deref(), Some("openai:429"));
    assert_eq!(
        counted(&h),
        vec![requests_metric("gpt-4.1", "claude", "team-a", "ok")]
    );
}

#[test]
fn every_outcome_is_counted_exactly_once() {
    type Scenario = fn(&mut Exchange, &mut FakeHost);
    let scenarios: [(&str, Scenario); 6] = [
        ("ok", |ex, h| {
            assert_eq!(send(ex, h, &hello("gpt-4o-mini")), Step::Continue);
            answer(ex, h, 200, &JSON, &completion("Hi!"));
        }),
        ("upstream_error", |ex, h| {
            assert_eq!(send(ex, h, &hello("gpt-4o-mini")), Step::Continue);
            answer(ex, h, 502, &JSON, b"{}");
        }),
        ("stream_incomplete", |ex, h| {
            let mut body = hello("gpt-4o-mini");
            body["stream"] = json!(true);
            assert_eq!(send(ex, h, &body), Step::Continue);
            answer(ex, h, 200, &SSE, &stream("Hi!", true, false));
        }),
        ("no_response", |ex, h| {
            assert_eq!(send(ex, h, &hello("gpt-4o-mini")), Step::Continue);
        }),
        ("bad_request", |ex, h| {
            reply(send_raw(ex, h, b"{"));
        }),
        ("unauthorized", |ex, h| {
            h.request_headers.retain(|(k, _)| k != "authorization");
            reply(ex.on_request_headers(h, false));
        }),
    ];
    let vm = vm(&host(&[]), &config());
    for (outcome, scenario) in scenarios {
        let mut h = host(&chat());
        let mut ex = vm.exchange(1).unwrap();
        scenario(&mut ex, &mut h);
        ex.finish(&mut h);
        ex.abandon(&h);
        let counted = counted(&h);
        assert_eq!(counted.len(), 1, "{outcome}: {counted:?}");
        assert!(
            counted[0].ends_with(&format!("outcome=.={outcome};.;")),
            "{outcome}: {counted:?}"
        );
        assert_eq!(h.prop("llm.outcome").as_deref(), Some(outcome));
    }
    // A request that is not the gateway's writes nothing.
    let mut h = host(&post("/v1/files", &[]));
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(ex.on_request_headers(&mut h, false), Step::Continue);
    ex.finish(&mut h);
    assert!(h.updates.is_empty() && h.set_properties.is_empty());
}
