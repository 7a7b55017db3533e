//! The failover chain's upstream filter: attempt n adapts the gateway's request to provider n
//! of the plan, and journals how it ended.

use serde_json::json;

use super::support::*;
use crate::flow::attempt::AttemptFilter;
use crate::flow::Step;
use crate::host::fake::FakeHost;
use crate::host::Buffer;

/// The request as the gateway filter sends it down the chain (plan in the filter state), seen
/// by attempt `n`.
fn attempt_host(n: u64) -> FakeHost {
    let mut g = host(&chat());
    let vm = vm(&g, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut g, &hello("gpt-4.1")), Step::Continue);
    let mut h = host(&[]);
    h.request_headers = g.request_headers.clone();
    h.request_headers
        .push(("x-envoy-expected-rq-timeout-ms".into(), "1000".into()));
    h.request_body = g.request_body.clone();
    h.properties = g.properties.clone();
    h.properties.insert(
        "upstream.request_attempt_count".into(),
        n.to_le_bytes().to_vec(),
    );
    h
}

fn journal(h: &FakeHost) -> serde_json::Value {
    parsed(&h.properties["llm.journal"])
}

#[test]
fn the_first_attempt_goes_to_the_first_provider_with_its_key() {
    let mut h = attempt_host(1);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(
        h.request_header(":path").as_deref(),
        Some("/v1/chat/completions")
    );
    assert_eq!(
        h.request_header("authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(h.request_header("anthropic-version"), None);
    assert_eq!(h.request_header("content-length"), None);
    let body = h.request_body.clone();
    assert_eq!(a.on_request_body(&mut h, body.len(), true), Step::Continue);
    // Already naming the attempt's model: the same bytes.
    assert_eq!(h.bodies_set, vec![(Buffer::RequestBody, body.len(), body)]);
    // A later provider could still serve: the answer is held until it is seen to be one.
    let held = answer_attempt(&mut a, &mut h, 200, &JSON, &completion("Hi!"));
    assert_eq!(held, Step::Pause);
    assert_eq!(journal(&h), json!([["openai", "200"]]));
    assert_eq!(h.response_body, completion("Hi!"));
    assert_eq!(h.bodies_set.len(), 2);
    // Answered: nothing more to journal when it ends.
    a.on_done(&mut h);
    assert_eq!(journal(&h), json!([["openai", "200"]]));
}

fn answer_attempt(
    a: &mut AttemptFilter,
    h: &mut FakeHost,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Step {
    h.respond(status, headers, body);
    let step = a.on_response_headers(h, false);
    let n = h.response_body.len();
    assert_eq!(a.on_response_body(h, n, true), Step::Continue);
    step
}

#[test]
fn the_second_attempt_is_adapted_to_an_anthropic_provider_and_its_answer_translated() {
    let mut h = attempt_host(2);
    // What the first attempt left behind: its credential header and its journal entry.
    h.request_headers
        .push(("authorization".into(), "Bearer sk-openai".into()));
    h.properties
        .insert("llm.journal".into(), br#"[["openai","503"]]"#.to_vec());
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
    assert_eq!(h.request_header("authorization"), None);
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("sk-ant"));
    assert_eq!(
        h.request_header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    let n = h.request_body.len();
    assert_eq!(a.on_request_body(&mut h, n, false), Step::Pause);
    assert_eq!(a.on_request_body(&mut h, n, true), Step::Continue);
    assert_eq!(
        parsed(&h.request_body),
        json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]})
    );
    let message = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                         "content": [{"type": "text", "text": "Hi!"}], "stop_reason": "max_tokens",
                         "usage": {"input_tokens": 9, "output_tokens": 2, "cache_read_input_tokens": 3}})
    .to_string()
    .into_bytes();
    h.respond(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", "180"),
        ],
        &message,
    );
    assert_eq!(a.on_response_headers(&mut h, false), Step::Continue);
    assert_eq!(h.response_header("content-length"), None);
    assert_eq!(journal(&h), json!([["openai", "503"], ["claude", "200"]]));
    assert_eq!(a.on_response_body(&mut h, 5, false), Step::Pause);
    assert_eq!(
        a.on_response_body(&mut h, message.len(), true),
        Step::Continue
    );
    assert_eq!(
        parsed(&h.response_body),
        json!({"id": "msg_2", "object": "chat.completion", "created": NOW_MS / 1000, "model": "claude-sonnet-4-5",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "length"}],
               "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14,
                         "prompt_tokens_details": {"cached_tokens": 3}}})
    );
}

#[test]
fn an_attempt_without_an_answer_journals_why() {
    for (failure, waited_ms, outcome) in [
        (Some("delayed connect error: 111"), 5, "connect_failure"),
        (None, 950, "timeout"),
        (None, 10, "reset"),
    ] {
        let mut h = attempt_host(1);
        if let Some(f) = failure {
            h.properties.insert(
                "upstream.transport_failure_reason".into(),
                f.as_bytes().to_vec(),
            );
        }
        let mut a = AttemptFilter::default();
        assert_eq!(a.on_request_headers(&mut h), Step::Continue);
        h.advance_ms(waited_ms);
        a.on_done(&mut h);
        assert_eq!(journal(&h), json!([["openai", outcome]]), "{outcome}");
    }
}

#[test]
fn an_attempt_whose_key_the_vm_cannot_read_goes_without_a_credential() {
    let mut h = attempt_host(1);
    h.env.clear();
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(h.request_header("authorization"), None);
    assert_eq!(
        h.request_header(":path").as_deref(),
        Some("/v1/chat/completions")
    );
}

#[test]
fn a_request_without_a_plan_or_past_the_chain_is_left_alone() {
    for plan in [false, true] {
        let mut h = attempt_host(3);
        if !plan {
            h.properties.remove("llm.plan");
        }
        let before = h.request_headers.clone();
        let mut a = AttemptFilter::default();
        assert_eq!(a.on_request_headers(&mut h), Step::Continue);
        let n = h.request_body.len();
        assert_eq!(a.on_request_body(&mut h, n, true), Step::Continue);
        assert_eq!(
            answer_attempt(&mut a, &mut h, 503, &JSON, b"{}"),
            Step::Continue
        );
        a.on_done(&mut h);
        assert_eq!(h.request_headers, before);
        assert!(h.bodies_set.is_empty());
        assert!(!h.properties.contains_key("llm.journal"));
    }
}

/// `config()` with a chain openai → bedrock → gemini on model `resilient`.
fn cloud_chain_host(n: u64) -> FakeHost {
    let mut c = config();
    c["providers"]["bedrock"] = json!({"cluster": "bedrock", "format": "bedrock"});
    c["providers"]["gemini"] =
        json!({"cluster": "gemini", "format": "gemini", "api_key_env": "OPENAI_API_KEY"});
    if let Some(routes) = c["routes"].as_array_mut() {
        routes.insert(
            0,
            json!({"name": "resilient", "match": {"model": "resilient"},
            "to": {"provider": "openai", "model": "gpt-4o-mini"},
            "fallback": {"cluster": "failover-clouds", "to": [
                {"provider": "bedrock", "model": "anthropic.claude-sonnet-4-5-20250929-v1:0"},
                {"provider": "gemini", "model": "gemini-2.5-flash"}]}}),
        );
    }
    let mut g = host(&chat());
    let vm = vm(&g, &c);
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut g, &hello("resilient")), Step::Continue);
    let mut h = host(&[]);
    h.request_headers = g.request_headers.clone();
    h.request_headers
        .push((":authority".into(), "gateway".into()));
    h.request_body = g.request_body.clone();
    h.properties = g.properties.clone();
    h.properties.insert(
        "upstream.request_attempt_count".into(),
        n.to_le_bytes().to_vec(),
    );
    h
}

#[test]
fn a_bedrock_attempt_is_named_for_its_signer_and_the_next_drops_what_the_signer_left() {
    let mut h = cloud_chain_host(1);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(
        h.request_header("x-llm-attempt-provider").as_deref(),
        Some("openai")
    );
    assert_eq!(h.prop("llm.authority").as_deref(), Some("gateway"));

    // Attempt 2 reaches Bedrock: its path and Converse body, no credential of the gateway's
    // (Envoy's signer, matching the header, signs it).
    let mut h = cloud_chain_host(2);
    h.properties
        .insert("llm.authority".into(), b"gateway".to_vec());
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(
        h.request_header(":path").as_deref(),
        Some("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse")
    );
    assert_eq!(
        h.request_header("x-llm-attempt-provider").as_deref(),
        Some("bedrock")
    );
    assert_eq!(h.request_header("authorization"), None);
    let body = h.request_body.clone();
    assert_eq!(a.on_request_body(&mut h, body.len(), true), Step::Continue);
    let converse = parsed(&h.request_body);
    assert!(converse.get("model").is_none(), "{converse}");
    assert_eq!(converse["messages"][0]["content"][0]["text"], "Hello");
    // Bedrock's model error reaches the retry policy as a 502, and the answer is chat's.
    let answer = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
        "stopReason": "end_turn", "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}});
    h.respond(424, &JSON, br#"{"message":"model error"}"#);
    assert_eq!(a.on_response_headers(&mut h, false), Step::Continue);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
    answer_attempt(&mut a, &mut h, 200, &JSON, answer.to_string().as_bytes());
    let chat = parsed(&h.response_body);
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["model"], "anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(chat["usage"]["prompt_tokens"], 3);

    // Attempt 3 (Gemini) after the signer rewrote the host and added its headers.
    let mut h = cloud_chain_host(3);
    h.properties
        .insert("llm.authority".into(), b"gateway".to_vec());
    for (k, v) in [
        (":authority", "bedrock-runtime.us-east-1.amazonaws.com"),
        ("authorization", "AWS4-HMAC-SHA256 Credential=..."),
        ("x-amz-date", "20260101T000000Z"),
        ("x-amz-content-sha256", "abc"),
        ("x-amz-security-token", "session"),
    ] {
        h.request_headers.retain(|(n, _)| n != k);
        h.request_headers.push((k.into(), v.into()));
    }
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    assert_eq!(h.request_header(":authority").as_deref(), Some("gateway"));
    for gone in [
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ] {
        assert_eq!(h.request_header(gone), None, "{gone}");
    }
    assert_eq!(
        h.request_header("x-goog-api-key").as_deref(),
        Some("sk-openai")
    );
    assert_eq!(
        h.request_header(":path").as_deref(),
        Some("/v1beta/models/gemini-2.5-flash:generateContent")
    );
    assert_eq!(
        h.request_header("x-llm-attempt-provider").as_deref(),
        Some("gemini")
    );
}

/// Attempt 1 of 2 answered 200 with a stream: held until its first event.
fn held_stream() -> (AttemptFilter, FakeHost) {
    let mut h = attempt_host(1);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    h.respond(200, &SSE, b"");
    assert_eq!(a.on_response_headers(&mut h, false), Step::Pause);
    (a, h)
}

/// The next piece of the stream arrives (Envoy hands over what the filter left buffered and
/// the new bytes).
fn piece(a: &mut AttemptFilter, h: &mut FakeHost, bytes: &str, end: bool) -> Step {
    h.response_body.extend_from_slice(bytes.as_bytes());
    let n = h.response_body.len();
    a.on_response_body(h, n, end)
}

#[test]
fn a_stream_that_opens_with_an_in_band_error_becomes_a_503_for_the_retry_policy() {
    let (mut a, mut h) = held_stream();
    let error = "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    assert_eq!(piece(&mut a, &mut h, &error[..30], false), Step::Pause);
    // Held by the filter, not left in Envoy's buffer.
    assert!(h.response_body.is_empty());
    assert_eq!(h.response_header(":status").as_deref(), Some("200"));
    assert_eq!(piece(&mut a, &mut h, &error[30..], false), Step::Continue);
    assert_eq!(h.response_header(":status").as_deref(), Some("503"));
    assert_eq!(journal(&h), json!([["openai", "in_band_error"]]));
    // Decided: the rest passes, and the end journals nothing more.
    assert_eq!(piece(&mut a, &mut h, "", true), Step::Continue);
    a.on_done(&mut h);
    assert_eq!(journal(&h), json!([["openai", "in_band_error"]]));
}

#[test]
fn a_stream_is_let_through_whole_at_its_first_output() {
    let (mut a, mut h) = held_stream();
    let role = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    let text = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
    assert_eq!(piece(&mut a, &mut h, role, false), Step::Pause);
    assert!(h.response_body.is_empty());
    assert_eq!(piece(&mut a, &mut h, text, false), Step::Continue);
    assert_eq!(h.response_body, format!("{role}{text}").into_bytes());
    assert_eq!(h.response_header(":status").as_deref(), Some("200"));
    // Then it streams as it comes.
    h.response_body.clear();
    assert_eq!(
        piece(&mut a, &mut h, "data: [DONE]\n\n", true),
        Step::Continue
    );
    assert_eq!(h.response_body, b"data: [DONE]\n\n");
    a.on_done(&mut h);
    assert_eq!(journal(&h), json!([["openai", "200"]]));
}

#[test]
fn a_stream_whose_first_event_never_comes_is_journaled_as_such() {
    let (mut a, mut h) = held_stream();
    // Envoy's per-try timeout (1000 ms here) ends the attempt while its headers are held.
    h.advance_ms(1000);
    a.on_done(&mut h);
    assert_eq!(journal(&h), json!([["openai", "first_event_timeout"]]));
    // Ended sooner (the client went away): a reset.
    let (mut a, mut h) = held_stream();
    h.advance_ms(10);
    a.on_done(&mut h);
    assert_eq!(journal(&h), json!([["openai", "reset"]]));
}

#[test]
fn a_json_200_that_is_an_error_object_fails_over_and_a_completion_does_not() {
    for (body, status, outcome) in [
        (
            r#"{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}"#
                .to_string(),
            "503",
            "in_band_error",
        ),
        (String::from_utf8(completion("Hi!")).unwrap(), "200", "200"),
    ] {
        let mut h = attempt_host(1);
        let mut a = AttemptFilter::default();
        assert_eq!(a.on_request_headers(&mut h), Step::Continue);
        h.respond(200, &JSON, b"");
        assert_eq!(a.on_response_headers(&mut h, false), Step::Pause);
        assert_eq!(piece(&mut a, &mut h, &body[..10], false), Step::Pause);
        assert_eq!(piece(&mut a, &mut h, &body[10..], true), Step::Continue);
        assert_eq!(h.response_header(":status").as_deref(), Some(status));
        assert_eq!(h.response_body, body.as_bytes());
        assert_eq!(journal(&h), json!([["openai", outcome]]));
    }
}

#[test]
fn the_last_attempt_and_a_headers_only_answer_are_not_held() {
    let mut h = attempt_host(2);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    h.respond(200, &SSE, b"");
    assert_eq!(a.on_response_headers(&mut h, false), Step::Continue);
    let mut h = attempt_host(1);
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    h.respond(200, &JSON, b"");
    assert_eq!(a.on_response_headers(&mut h, true), Step::Continue);
}

#[test]
fn a_chain_without_the_first_event_check_passes_a_200_at_once() {
    let mut h = attempt_host(1);
    let mut plan = crate::failover::Plan::decode(&h.properties["llm.plan"]).unwrap();
    plan.first_event_check = false;
    h.properties
        .insert("llm.plan".into(), plan.encode().into_bytes());
    let mut a = AttemptFilter::default();
    assert_eq!(a.on_request_headers(&mut h), Step::Continue);
    h.respond(200, &SSE, b"");
    assert_eq!(a.on_response_headers(&mut h, false), Step::Continue);
}
