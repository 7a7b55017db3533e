//! Access tokens the VM fetches (`auth: gcp-metadata`): the root context's fetch and refresh,
//! requests that wait for the first token and are resumed or refused by it, and the failover
//! attempt that reads the token from shared data.

use serde_json::{json, Value};

use super::support::*;
use crate::flow::Step;
use crate::gcp_token;
use crate::host::fake::FakeHost;
use crate::names::metric;

/// `config()` with a Vertex AI provider whose token comes from the metadata server, and a
/// route to Claude on it.
fn vertex_config() -> Value {
    let mut c = config();
    c["providers"]["vertex"] = json!({"cluster": "vertex", "format": "vertex",
        "vertex": {"project": "proj-1", "location": "us-east5"},
        "token_cluster": "gcp-metadata"});
    if let Some(routes) = c["routes"].as_array_mut() {
        routes.insert(
            0,
            json!({"name": "vertex-claude", "match": {"model": "vclaude"},
            "to": {"provider": "vertex", "model": "claude-sonnet-4-5@20250929"}}),
        );
    }
    c
}

const TOKEN: &[u8] = br#"{"access_token":"ya29.first","expires_in":3600,"token_type":"Bearer"}"#;

/// The VM's tick asks the metadata server; the last callout is that fetch.
fn fetch(vm: &mut crate::flow::vm::Vm, h: &mut FakeHost) -> u32 {
    let before = h.callouts.len();
    vm.on_tick(h);
    assert_eq!(h.callouts.len(), before + 1, "one token fetch");
    let call = h.callouts.last().unwrap().clone();
    assert_eq!(call.cluster, "gcp-metadata");
    assert_eq!(call.path, gcp_token::TOKEN_PATH);
    let header = |n: &str| {
        call.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header(":method"), Some("GET"));
    assert_eq!(header("metadata-flavor"), Some("Google"));
    assert_eq!(header("content-type"), None);
    assert!(call.body.is_empty());
    call.token
}

#[test]
fn a_request_waits_for_the_first_token_and_is_resumed_with_it() {
    let mut h = host(&chat());
    let mut vm = vm(&h, &vertex_config());
    let mut ex = vm.exchange(7).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("vclaude")), Step::Pause);
    assert_eq!(
        h.request_header(":path").as_deref(),
        Some("/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    );
    let body: Value = serde_json::from_slice(&h.request_body).unwrap();
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    assert!(body.get("model").is_none(), "the model is in the path");
    assert_eq!(h.request_header("anthropic-version"), None);
    // The client's key is gone, and no token yet.
    assert_eq!(h.request_header("authorization"), None);
    assert!(h.resumed_contexts.is_empty());

    let token = fetch(&mut vm, &mut h);
    h.answer_call(200, TOKEN);
    vm.on_call_answer(&mut h, token, TOKEN.len());
    assert_eq!(h.resumed_contexts, [7]);
    assert_eq!(h.effective, None, "back in the root context");
    assert_eq!(
        h.request_header("authorization").as_deref(),
        Some("Bearer ya29.first")
    );
    let ok = crate::metrics::stat_name(
        metric::CREDENTIAL_REFRESHES,
        &[
            (metric::TAG_PROVIDER, "vertex"),
            (metric::TAG_OUTCOME, "ok"),
        ],
    );
    assert_eq!(h.metric_value(&ok), 1);

    // The next request goes at once, with the token; the answer is Anthropic's, translated.
    let mut h2 = next(&h, &chat());
    let mut ex2 = vm.exchange(8).unwrap();
    assert_eq!(send(&mut ex2, &mut h2, &hello("vclaude")), Step::Continue);
    assert_eq!(
        h2.request_header("authorization").as_deref(),
        Some("Bearer ya29.first")
    );
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2}});
    answer(
        &mut ex2,
        &mut h2,
        200,
        &JSON,
        message.to_string().as_bytes(),
    );
    let out: Value = serde_json::from_slice(&h2.response_body).unwrap();
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["usage"]["prompt_tokens"], 9);
}

#[test]
fn a_token_is_refreshed_at_half_its_life_and_failures_back_off() {
    let mut h = host(&[]);
    let mut vm = vm(&h, &vertex_config());
    let token = fetch(&mut vm, &mut h);
    let short = br#"{"access_token":"ya29.short","expires_in":10}"#;
    h.answer_call(200, short);
    vm.on_call_answer(&mut h, token, short.len());
    h.advance_ms(4_900);
    vm.on_tick(&mut h);
    let n = h.callouts.len();
    h.advance_ms(100);
    let token = fetch(&mut vm, &mut h);
    assert_eq!(h.callouts.len(), n + 1);
    // No second fetch while one is in flight.
    vm.on_tick(&mut h);
    assert_eq!(h.callouts.len(), n + 1);
    // A refusal keeps the old token and tries again later.
    h.answer_call(403, b"forbidden");
    vm.on_call_answer(&mut h, token, 9);
    assert_eq!(gcp_token::read(&h, "vertex").unwrap().value, "ya29.short");
    vm.on_tick(&mut h);
    assert_eq!(h.callouts.len(), n + 1, "backing off");
    h.advance_ms(600);
    fetch(&mut vm, &mut h);
    let error = crate::metrics::stat_name(
        metric::CREDENTIAL_REFRESHES,
        &[
            (metric::TAG_PROVIDER, "vertex"),
            (metric::TAG_OUTCOME, "error"),
        ],
    );
    assert_eq!(h.metric_value(&error), 1);
}

#[test]
fn a_request_that_gets_no_token_in_time_is_refused_and_counted_once() {
    let mut h = host(&chat());
    let mut vm = vm(&h, &vertex_config());
    let mut ex = vm.exchange(7).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("vclaude")), Step::Pause);
    let token = fetch(&mut vm, &mut h);
    h.answer_call(500, b"");
    vm.on_call_answer(&mut h, token, 0);
    assert!(h.replies.is_empty(), "still waiting");
    h.advance_ms(crate::flow::credentials::FIRST_TOKEN_WAIT_MS);
    vm.on_tick(&mut h);
    assert_eq!(h.replied_contexts, [7]);
    assert!(h.resumed_contexts.is_empty());
    let reply = h.replies.last().unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json()["error"]["code"],
        "provider_credential_unavailable"
    );
    // The reply passes the request's own response callbacks, then it ends.
    h.respond(503, &JSON, &reply.body.clone());
    assert_eq!(ex.on_response_headers(&mut h), Step::Continue);
    ex.finish(&mut h);
    assert_eq!(
        h.metric_value(&requests_metric(
            "vclaude",
            "vertex",
            "team-a",
            "credential_unavailable"
        )),
        1
    );
}

#[test]
fn a_request_gone_while_waiting_is_dropped() {
    let mut h = host(&chat());
    let mut vm = vm(&h, &vertex_config());
    let mut ex = vm.exchange(7).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("vclaude")), Step::Pause);
    h.gone_contexts.push(7);
    let token = fetch(&mut vm, &mut h);
    h.answer_call(200, TOKEN);
    vm.on_call_answer(&mut h, token, TOKEN.len());
    assert!(h.resumed_contexts.is_empty() && h.replied_contexts.is_empty());
    assert_eq!(h.effective, None);
}

/// Claude on Vertex AI refusing in Google's error shape: a Messages client (the answer passed
/// through) gets Anthropic's error of that status, without the provider's stated length; an
/// OpenAI client gets OpenAI's.
#[test]
fn google_shaped_errors_of_vertex_claude_reach_each_client_in_its_shape() {
    let google = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests."}})
    .to_string();
    let len = google.len().to_string();
    for (client, kind) in [(messages(), "rate_limit_error"), (chat(), "requests")] {
        let mut h = host(&client);
        let mut vm = vm(&h, &vertex_config());
        let token = fetch(&mut vm, &mut h);
        h.answer_call(200, TOKEN);
        vm.on_call_answer(&mut h, token, TOKEN.len());
        let mut h = next(&h, &client);
        let mut ex = vm.exchange(9).unwrap();
        let mut body = hello("vclaude");
        body["max_tokens"] = json!(64);
        assert_eq!(send(&mut ex, &mut h, &body), Step::Continue);
        let headers = [
            ("content-type", "application/json"),
            ("content-length", &len),
        ];
        answer(&mut ex, &mut h, 429, &headers, google.as_bytes());
        let out: Value = serde_json::from_slice(&h.response_body).unwrap();
        assert_eq!(out["error"]["type"], kind, "{out}");
        assert!(out["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Quota exceeded"));
        if client == messages() {
            assert_eq!(out["type"], "error", "{out}");
            assert_eq!(h.response_header("content-length"), None);
        }
        assert_eq!(h.response_header(":status").as_deref(), Some("429"));
    }
}
