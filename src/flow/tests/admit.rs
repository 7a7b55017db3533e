//! Stage 2: the complete body. Each admit path and the upstream request it makes: provider,
//! path, credential, version header, body.

use serde_json::json;

use super::support::*;
use crate::config::{AuthStyle, Format};
use crate::failover::{Attempt, Plan};
use crate::flow::Step;
use crate::host::fake::FakeHost;
use crate::host::Buffer;

/// Admit `body` sent with `headers`: the step, and the host as the flow left it.
fn admit(headers: &[(&str, &str)], body: &[u8]) -> (Step, FakeHost) {
    let mut h = host(headers);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    let step = send_raw(&mut ex, &mut h, body);
    (step, h)
}

fn header(h: &FakeHost, name: &str) -> Option<String> {
    h.request_header(name)
}

#[test]
fn openai_to_openai_rewrites_the_model_and_swaps_the_credential() {
    let body = br#"{"model":"fast","messages":[{"role":"user","content":"Hello"}]}"#;
    let sent = post(
        "/v1/chat/completions",
        &[
            ("x-llm-gateway-cluster", "anthropic"),
            ("content-length", "63"),
        ],
    );
    let (step, h) = admit(&sent, body);
    assert_eq!(step, Step::Continue);
    let rewritten = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}"#;
    assert_eq!(
        h.bodies_set,
        vec![(Buffer::RequestBody, body.len(), rewritten.to_vec())]
    );
    assert_eq!(header(&h, "content-length").as_deref(), Some("70"));
    assert_eq!(
        header(&h, "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    // The client's cluster header is replaced by the route's.
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    assert_eq!(header(&h, "accept-encoding"), None);
    assert_eq!(header(&h, ":path").as_deref(), Some("/v1/chat/completions"));
    assert!(h.callouts.is_empty() && h.replies.is_empty());
}

#[test]
fn a_stream_gets_include_usage_added() {
    let body =
        br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;
    let (step, h) = admit(&chat(), body);
    assert_eq!(step, Step::Continue);
    let out = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}],"stream_options":{"include_usage":true}}"#;
    assert_eq!(
        h.bodies_set,
        vec![(Buffer::RequestBody, body.len(), out.to_vec())]
    );
    assert_eq!(header(&h, "content-length"), Some(out.len().to_string()));
}

#[test]
fn a_request_the_provider_takes_as_is_keeps_its_body() {
    let (step, h) = admit(&chat(), hello("gpt-4o-mini").to_string().as_bytes());
    assert_eq!(step, Step::Continue);
    assert!(h.bodies_set.is_empty());
    assert_eq!(header(&h, "content-length"), None);
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
}

#[test]
fn an_anthropic_client_reaches_an_openai_provider_translated() {
    let mut headers = messages();
    headers[1] = (":path", "/v1/messages?beta=true");
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 100, "system": "Be brief.",
                      "messages": [{"role": "user", "content": "Hello"}]});
    let (step, h) = admit(&headers, body.to_string().as_bytes());
    assert_eq!(step, Step::Continue);
    assert_eq!(header(&h, ":path").as_deref(), Some("/v1/chat/completions"));
    assert_eq!(header(&h, "anthropic-version"), None);
    assert_eq!(header(&h, "x-api-key"), None);
    assert_eq!(
        header(&h, "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    let [(Buffer::RequestBody, _, sent)] = h.bodies_set.as_slice() else {
        panic!("one request body: {:?}", h.bodies_set);
    };
    assert_eq!(
        parsed(sent),
        json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"}]})
    );
    assert_eq!(header(&h, "content-length"), Some(sent.len().to_string()));
}

#[test]
fn an_openai_client_reaches_an_anthropic_provider_translated() {
    let (step, h) = admit(&chat(), hello("claude-sonnet-4-5").to_string().as_bytes());
    assert_eq!(step, Step::Continue);
    assert_eq!(header(&h, ":path").as_deref(), Some("/v1/messages"));
    assert_eq!(
        header(&h, "anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(header(&h, "x-api-key").as_deref(), Some("sk-ant"));
    assert_eq!(header(&h, "authorization"), None);
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("anthropic")
    );
    let [(Buffer::RequestBody, _, sent)] = h.bodies_set.as_slice() else {
        panic!("one request body: {:?}", h.bodies_set);
    };
    assert_eq!(
        parsed(sent),
        json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]})
    );
}

#[test]
fn an_anthropic_client_reaches_an_anthropic_provider_with_its_own_request() {
    let mut headers = messages();
    headers[5] = ("anthropic-version", "2023-01-01");
    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"Hello"}]}"#;
    let (step, h) = admit(&headers, body);
    assert_eq!(step, Step::Continue);
    // The client's version and body, the provider's key.
    assert_eq!(
        header(&h, "anthropic-version").as_deref(),
        Some("2023-01-01")
    );
    assert_eq!(
        h.bodies_set,
        vec![(Buffer::RequestBody, body.len(), body.to_vec())]
    );
    assert_eq!(header(&h, "x-api-key").as_deref(), Some("sk-ant"));
    assert_eq!(header(&h, ":path").as_deref(), Some("/v1/messages"));
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("anthropic")
    );
}

#[test]
fn an_azure_provider_gets_its_deployment_path_and_api_key() {
    let (step, h) = admit(&chat(), hello("azure-gpt").to_string().as_bytes());
    assert_eq!(step, Step::Continue);
    assert_eq!(
        header(&h, ":path").as_deref(),
        Some("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21")
    );
    assert_eq!(header(&h, "api-key").as_deref(), Some("az-key"));
    assert_eq!(header(&h, "authorization"), None);
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("azure")
    );
    let [(Buffer::RequestBody, _, sent)] = h.bodies_set.as_slice() else {
        panic!("one request body: {:?}", h.bodies_set);
    };
    assert_eq!(
        sent.as_slice(),
        br#"{"messages":[{"content":"Hello","role":"user"}],"model":"gpt-4o"}"#
    );
}

#[test]
fn a_failover_route_hands_its_plan_to_the_upstream_filter() {
    let (step, h) = admit(&chat(), hello("gpt-4.1").to_string().as_bytes());
    assert_eq!(step, Step::Continue);
    let plan = Plan::decode(&h.properties["llm.plan"]).unwrap();
    let attempt = |provider: &str, format, path: &str, model: &str, auth, key: &str| Attempt {
        provider: provider.into(),
        format,
        path: path.into(),
        model: model.into(),
        auth,
        key_env: Some(key.into()),
        key: 0,
        cooldown: Some((1_000, 60_000)),
    };
    assert_eq!(
        plan,
        Plan {
            default_max_tokens: 4096,
            first_event_check: true,
            trace: None,
            attempts: vec![
                attempt(
                    "openai",
                    Format::Openai,
                    "/v1/chat/completions",
                    "gpt-4.1",
                    AuthStyle::Bearer,
                    "OPENAI_API_KEY"
                ),
                attempt(
                    "claude",
                    Format::Anthropic,
                    "/v1/messages",
                    "claude-sonnet-4-5",
                    AuthStyle::XApiKey,
                    "ANTHROPIC_API_KEY"
                ),
            ],
        }
    );
    assert_eq!(h.set_properties, vec!["llm.plan".to_string()]);
    assert_eq!(header(&h, "x-envoy-max-retries").as_deref(), Some("1"));
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("failover-openai-claude")
    );
    // Each attempt's credential and body are the upstream filter's to set.
    assert_eq!(header(&h, "authorization"), None);
    assert!(h.bodies_set.is_empty());
    assert_eq!(header(&h, ":path").as_deref(), Some("/v1/chat/completions"));
}

#[test]
fn a_streamed_chain_request_waits_for_its_first_event_as_long_as_the_chain_says() {
    let mut c = config();
    let route = c["routes"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["fallback"].is_object()))
        .unwrap();
    route["fallback"]["first_event_timeout_ms"] = 750.into();
    let vm = vm(&host(&[]), &c);
    // A client's own per-try timeout never reaches Envoy's router.
    let client = post(
        "/v1/chat/completions",
        &[("x-envoy-upstream-rq-per-try-timeout-ms", "1")],
    );
    for (stream, want) in [(true, Some("750")), (false, None)] {
        let mut h = host(&client);
        let mut ex = vm.exchange(1).unwrap();
        let mut body = hello("gpt-4.1");
        body["stream"] = stream.into();
        assert_eq!(send(&mut ex, &mut h, &body), Step::Continue);
        assert_eq!(
            header(&h, "x-envoy-upstream-rq-per-try-timeout-ms").as_deref(),
            want,
            "stream {stream}"
        );
    }
    // Without the setting the route's per_try_timeout applies.
    let (_, h) = admit(&client, hello("gpt-4.1").to_string().as_bytes());
    assert_eq!(header(&h, "x-envoy-upstream-rq-per-try-timeout-ms"), None);
    assert!(
        Plan::decode(&h.properties["llm.plan"])
            .unwrap()
            .first_event_check
    );
    // A chain may turn the check off: its attempts pass a 200 at once.
    let mut c = config();
    if let Some(r) = c["routes"]
        .as_array_mut()
        .and_then(|r| r.iter_mut().find(|r| r["fallback"].is_object()))
    {
        r["fallback"]["first_event_check"] = false.into();
    }
    let unchecked = super::support::vm(&host(&[]), &c);
    let mut h = host(&chat());
    let mut ex = unchecked.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4.1")), Step::Continue);
    assert!(
        !Plan::decode(&h.properties["llm.plan"])
            .unwrap()
            .first_event_check
    );
}

#[test]
fn a_weighted_split_follows_the_draw() {
    let vm = vm(&host(&[]), &config());
    for (draw, cluster) in [(89, "openai"), (90, "azure"), (99, "azure"), (0, "openai")] {
        let mut h = host(&chat());
        h.draws.push_back(draw);
        let mut ex = vm.exchange(1).unwrap();
        assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o")), Step::Continue);
        assert_eq!(
            header(&h, "x-llm-gateway-cluster").as_deref(),
            Some(cluster),
            "draw {draw}"
        );
        assert!(h.draws.is_empty());
    }
}

#[test]
fn a_header_route_wins_over_the_model() {
    let headers = post("/v1/chat/completions", &[("x-llm-tier", "fast")]);
    let mut h = host(&headers);
    let vm = vm(&h, &config());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(
        send(&mut ex, &mut h, &hello("claude-sonnet-4-5")),
        Step::Continue
    );
    assert_eq!(
        header(&h, "x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    let [(Buffer::RequestBody, _, sent)] = h.bodies_set.as_slice() else {
        panic!("one request body: {:?}", h.bodies_set);
    };
    assert_eq!(parsed(sent)["model"], "gpt-4o-mini");
    assert_eq!(ex.record.model_label.as_deref(), Some("other:fast-tier"));
}

#[test]
fn a_model_no_route_serves_is_404() {
    let (step, h) = admit(&chat(), hello("llama-3").to_string().as_bytes());
    let r = reply(step);
    assert_eq!(r.status, 404);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "The model `llama-3` does not exist or you do not have access to it.",
                         "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    );
    assert_eq!(header(&h, "x-llm-gateway-cluster"), None);
}
