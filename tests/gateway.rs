//! Integration tests: the real wasm in real Envoy (2 workers) in front of the fake provider.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn demo() -> (Fake, Gateway) {
    let fake = Fake::start(None);
    let gw = Gateway::start(&fake, Options::default());
    (fake, gw)
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
}

/// Which demo provider served a response, from the credential the fake provider received.
fn served_by(r: &Resp) -> &'static str {
    let auth = r.header("x-fake-received-authorization").unwrap_or("");
    let key = r.header("x-fake-received-api-key").unwrap_or("");
    match (auth, key) {
        (a, "") if a == fingerprint(&format!("Bearer {OPENAI_KEY}")) => "openai",
        ("", k) if k == fingerprint(BACKUP_KEY) => "backup",
        other => panic!("unexpected credentials upstream: {other:?}"),
    }
}

#[test]
fn routes_by_model_header_and_weight() {
    let (_fake, gw) = demo();

    let r = chat(&gw, &hello("gpt-4o-mini"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&r), "openai");
    assert_eq!(r.header("x-fake-received-model"), Some("gpt-4o-mini"));
    assert_eq!(r.json()["object"], "chat.completion");

    // Header rule first: the fast tier rewrites the model.
    let r = chat(&gw, &hello("gpt-4o"), &[("x-llm-tier", "fast")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-fake-received-model"), Some("gpt-4o-mini"));
    assert_eq!(served_by(&r), "openai");

    // Prefix glob.
    let r = post(
        &gw.url("/v1/embeddings"),
        &[
            ("authorization", "Bearer sk-gateway-demo"),
            ("content-type", "application/json"),
        ],
        br#"{"model":"text-embedding-3-small","input":"Hello, world!"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["prompt_tokens"], 4);

    // 90/10 weighted split.
    let mut by = HashMap::new();
    for _ in 0..200 {
        let r = chat(&gw, &hello("gpt-4o"), &[]);
        assert_eq!(r.status, 200);
        *by.entry(served_by(&r)).or_insert(0) += 1;
    }
    let backup = by.get("backup").copied().unwrap_or(0);
    assert!(
        (6..=40).contains(&backup),
        "backup got {backup} of 200 (expected about 20): {by:?}"
    );

    // The access log names the cluster that served each request.
    let log = gw.access_log(203);
    let clusters: Vec<&str> = log
        .iter()
        .filter_map(|l| l["upstream_cluster"].as_str())
        .collect();
    assert_eq!(clusters.iter().filter(|c| **c == "backup").count(), backup);
}

#[test]
fn credentials_and_cluster_header_cannot_be_chosen_by_the_client() {
    let fake = Fake::start(None);
    let opts = Options {
        // A cluster a client would love to reach; it must never be reachable by header.
        edit: Some(Box::new(|b: &mut Value| {
            let mut evil = b["static_resources"]["clusters"][0].clone();
            evil["name"] = "evil".into();
            evil["load_assignment"]["cluster_name"] = "evil".into();
            evil["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"] = 1.into();
            b["static_resources"]["clusters"]
                .as_array_mut()
                .unwrap()
                .push(evil);
        })),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);

    let r = chat(
        &gw,
        &hello("gpt-4o-mini"),
        &[
            ("accept-encoding", "gzip, br"),
            ("x-llm-gateway-cluster", "evil"),
            ("api-key", "client-azure-key"),
            ("x-api-key", "client-x-key"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.received_headers();
    assert_eq!(
        seen["authorization"],
        fingerprint(&format!("Bearer {OPENAI_KEY}"))
    );
    assert!(seen.get("api-key").is_none(), "{seen}");
    assert!(seen.get("x-api-key").is_none(), "{seen}");
    assert_eq!(seen["x-llm-gateway-cluster"], "openai");
    // Asked for an uncompressed answer, which the filter can read as it passes.
    assert!(seen.get("accept-encoding").is_none(), "{seen}");
    let all = seen.to_string();
    for secret in [DEMO_KEY, "client-azure-key", "client-x-key"] {
        // The fake echoes credentials as fingerprints of the whole header value.
        for seen_as in [
            secret.to_string(),
            fingerprint(secret),
            fingerprint(&format!("Bearer {secret}")),
        ] {
            assert!(
                !all.contains(&seen_as),
                "client credential {secret} reached the provider: {all}"
            );
        }
    }

    // A request the filter answers itself cannot pick the cluster either, and takes its
    // credential nowhere.
    let req = format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {DEMO_KEY}\r\nx-llm-gateway-cluster: evil\r\nconnection: close\r\n\r\n");
    let out = String::from_utf8_lossy(&raw(gw.port, req.as_bytes())).into_owned();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"object\":\"list\""), "{out}");
    assert!(
        !out.contains("x-fake-"),
        "answered by the gateway, not a provider: {out}"
    );
}

#[test]
fn prompt_tokens_equal_the_providers_usage() {
    let (_fake, gw) = demo();
    let bodies = [
        hello("gpt-4o-mini"),
        json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
        ]}),
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "developer", "content": "Réponds en français. 日本語も大丈夫。 Emoji: 🚀🔥"},
            {"role": "user", "content": "Line one\nLine \"two\"\t<|endoftext|> and \\u escapes \u{1F600}"},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "x".repeat(3000)}
        ]}),
    ];
    // Each body twice: the second count of a long prompt comes from the VM's count cache.
    for (i, body) in bodies.iter().flat_map(|b| [b, b]).enumerate() {
        let r = chat(&gw, body, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let provider = r.json()["usage"]["prompt_tokens"].as_u64().unwrap();
        assert_eq!(
            r.header("x-fake-prompt-tokens"),
            Some(provider.to_string().as_str())
        );
        let log = gw.access_log(i + 1);
        let line = log.get(i).expect("one access-log line per request");
        assert_eq!(
            line["counted_prompt_tokens"],
            provider.to_string(),
            "{line}"
        );
        assert_eq!(line["prompt_tokens"], provider.to_string());
        assert_eq!(line["usage_estimated"], "false");
    }
}

/// The stream a client gets through the gateway, and the one the provider sends for the same
/// request with usage asked for.
fn stream_pair(gw: &Gateway, fake: &Fake, client_asks_usage: bool) -> (Vec<u8>, Vec<u8>) {
    let mut body = json!({"model": "gpt-4o-mini", "stream": true,
                          "messages": [{"role": "user", "content": "Tell me a story"}]});
    if client_asks_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    let fixed = [
        ("x-fake-id", "chatcmpl-fixed"),
        ("x-fake-completion-tokens", "24"),
    ];
    let through = chat(gw, &body, &fixed);
    assert_eq!(through.status, 200);
    assert_eq!(through.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        through.header("x-fake-received-include-usage"),
        Some("true")
    );
    let mut direct_body = body.clone();
    direct_body["stream_options"] = json!({"include_usage": true});
    let direct = post(
        &format!("http://127.0.0.1:{}/v1/chat/completions", fake.port),
        &[("content-type", "application/json"), fixed[0], fixed[1]],
        direct_body.to_string().as_bytes(),
    );
    assert_eq!(direct.status, 200);
    (through.body, direct.body)
}

#[test]
fn streams_pass_byte_for_byte_and_usage_is_read() {
    let (fake, gw) = demo();

    // The filter asked for usage: the client gets the provider's bytes minus the usage chunk.
    let (through, direct) = stream_pair(&gw, &fake, false);
    let direct = String::from_utf8(direct).unwrap();
    let events: Vec<&str> = direct.split_inclusive("\n\n").collect();
    let usage_event = events
        .iter()
        .find(|e| e.contains("\"choices\":[]") && e.contains("\"prompt_tokens\""))
        .expect("provider sent a usage chunk");
    let expected = direct.replacen(usage_event, "", 1);
    assert_eq!(String::from_utf8(through).unwrap(), expected);
    let usage: Value =
        serde_json::from_str(usage_event.trim().trim_start_matches("data: ")).unwrap();
    let line = gw.access_log(1).pop().unwrap();
    assert_eq!(line["stream"], "true");
    assert_eq!(
        line["prompt_tokens"],
        usage["usage"]["prompt_tokens"].to_string()
    );
    assert_eq!(line["completion_tokens"], "24");
    assert_eq!(
        line["total_tokens"],
        usage["usage"]["total_tokens"].to_string()
    );
    assert_eq!(line["outcome"], "ok");
    assert!(
        line["ttft_ms"].as_str().unwrap().parse::<u64>().is_ok(),
        "{line}"
    );

    // The client asked for usage itself: it gets every byte.
    let (through, direct) = stream_pair(&gw, &fake, true);
    assert_eq!(through, direct);
}

#[test]
fn streams_are_not_buffered() {
    let (_fake, gw) = demo();
    let body = json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "slowly"}]});
    let t0 = Instant::now();
    let mut r = agent()
        .post(&gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-gateway-demo")
        .header("x-fake-chunk-delay-ms", "100")
        .header("x-fake-completion-tokens", "15")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut reader = r.body_mut().as_reader();
    let mut buf = [0u8; 4096];
    let mut first_content = None;
    let mut seen = Vec::new();
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if first_content.is_none() && String::from_utf8_lossy(&seen).contains("\"content\":\" ") {
            first_content = Some(t0.elapsed());
        }
    }
    let total = t0.elapsed();
    let first = first_content.expect("content arrived");
    // 17+ events 100 ms apart: the first token must arrive long before the stream ends.
    assert!(total >= Duration::from_millis(1500), "{total:?}");
    assert!(
        first < Duration::from_millis(600),
        "first token after {first:?} of {total:?}"
    );
    let text = String::from_utf8(seen).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(!text.contains("\"usage\":{"), "usage chunk leaked: {text}");
}

#[test]
fn usage_details_and_estimates() {
    let (_fake, gw) = demo();
    let r = chat(
        &gw,
        &hello("gpt-4o-mini"),
        &[
            ("x-fake-cached-tokens", "3"),
            ("x-fake-reasoning-tokens", "5"),
        ],
    );
    assert_eq!(r.status, 200);
    let line = gw.access_log(1).pop().unwrap();
    assert_eq!(line["cached_tokens"], "3");
    assert_eq!(line["reasoning_tokens"], "5");
    assert_eq!(
        line["completion_tokens"],
        r.json()["usage"]["completion_tokens"].to_string()
    );

    // A provider that sends no usage: the filter's own counts, flagged.
    let body = json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "Hello"}]});
    let r = chat(
        &gw,
        &body,
        &[("x-fake-no-usage", "1"), ("x-fake-completion-tokens", "12")],
    );
    assert_eq!(r.status, 200);
    let line = gw.access_log(2).pop().unwrap();
    assert_eq!(line["usage_estimated"], "true", "{line}");
    assert_eq!(line["prompt_tokens"], "8");
    assert_eq!(line["completion_tokens"], "12");

    let r = chat(
        &gw,
        &hello("gpt-4o-mini"),
        &[("x-fake-no-usage", "1"), ("x-fake-completion-tokens", "7")],
    );
    assert_eq!(r.status, 200);
    assert!(r.json().get("usage").is_none());
    let line = gw.access_log(3).pop().unwrap();
    assert_eq!(
        (
            line["completion_tokens"].as_str(),
            line["usage_estimated"].as_str()
        ),
        (Some("7"), Some("true"))
    );
}

fn error_of(r: &Resp) -> (u16, String) {
    let v = r.json();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("code").is_some(), "{v}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    (r.status, e["code"].as_str().unwrap_or("").to_string())
}

#[test]
fn every_error_is_openai_shaped_and_counted_once() {
    let fake = Fake::start(None);
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
                      "dead": {"cluster": "backup", "auth": "none"}},
        "routes": [{"match": {"path": "/v1/embeddings"}, "to": {"provider": "openai", "model": "text-embedding-3-small"}},
                   {"match": {"model": "gpt-4o*"}, "to": {"provider": "openai"}},
                   {"match": {"model": "dead-model"}, "to": {"provider": "dead"}}],
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}],
        "max_request_body_bytes": 4096
    });
    let opts = Options {
        plugin_config: Some(config),
        edit: Some(Box::new(|b: &mut Value| {
            // The "dead" provider's cluster refuses connections.
            b["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]
                ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] =
                1.into();
        })),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);
    let key = [
        ("authorization", "Bearer sk-gateway-demo"),
        ("content-type", "application/json"),
    ];
    let url = gw.url("/v1/chat/completions");

    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed",
            key.to_vec(),
            b"{\"model\": \"gpt-4o\", ".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            key.to_vec(),
            b"[1,2,3]".to_vec(),
            400,
            "invalid_json",
        ),
        ("empty", key.to_vec(), Vec::new(), 400, "invalid_json"),
        (
            "no model",
            key.to_vec(),
            br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "missing_required_parameter",
        ),
        (
            "bad model",
            key.to_vec(),
            br#"{"model":42,"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "invalid_value",
        ),
        (
            "no messages",
            key.to_vec(),
            br#"{"model":"gpt-4o"}"#.to_vec(),
            400,
            "missing_required_parameter",
        ),
        (
            "bad messages",
            key.to_vec(),
            br#"{"model":"gpt-4o","messages":"hi"}"#.to_vec(),
            400,
            "invalid_value",
        ),
        (
            "unknown model",
            key.to_vec(),
            hello("claude-9").to_string().into_bytes(),
            404,
            "model_not_found",
        ),
        (
            "no key",
            vec![("content-type", "application/json")],
            hello("gpt-4o").to_string().into_bytes(),
            401,
            "missing_api_key",
        ),
        (
            "wrong key",
            vec![("authorization", "Bearer sk-wrong")],
            hello("gpt-4o").to_string().into_bytes(),
            401,
            "invalid_api_key",
        ),
        (
            "too large",
            key.to_vec(),
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(5000)}]})
                .to_string()
                .into_bytes(),
            413,
            "request_too_large",
        ),
    ];
    for (name, headers, body, status, code) in &cases {
        let r = post(&url, headers, body);
        assert_eq!(
            error_of(&r),
            (*status, code.to_string()),
            "{name}: {}",
            r.text()
        );
        assert!(
            r.header("x-fake-received-model").is_none(),
            "{name} reached the provider"
        );
    }
    // Chunked upload over the limit (no content-length): refused while it streams in.
    let big = vec![b' '; 10_000];
    let r = agent()
        .post(&url)
        .header("authorization", "Bearer sk-gateway-demo")
        .send(ureq::SendBody::from_reader(&mut &big[..]))
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // Header values that are not UTF-8 cannot hurt the VM.
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":""}]}"#;
    let mut req = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \xff\xfe\r\nx-llm-tier: \xc3\x28\r\ncontent-type: application/json\r\nconnection: close\r\n".to_vec();
    req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    let out = raw(gw.port, &req);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Upstream failures are the provider's answer, passed through and counted.
    let r = chat(&gw, &hello("gpt-4o"), &[("x-fake-status", "503")]);
    assert_eq!(r.status, 503);
    let r = chat(&gw, &hello("dead-model"), &[]);
    assert_eq!(r.status, 503);

    // Still serving after all that.
    let r = chat(&gw, &hello("gpt-4o"), &[]);
    assert_eq!(r.status, 200);

    // Routing by path (first rule), with a model rewrite.
    let r = post(
        &gw.url("/v1/embeddings"),
        &key,
        br#"{"model":"any-embedder","input":"Hello, world!"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-fake-received-model"),
        Some("text-embedding-3-small")
    );

    let total = cases.len() + 1 + 1 + 2 + 1 + 1;
    let log = gw.access_log(total);
    assert_eq!(log.len(), total);
    let outcomes: Vec<&str> = log
        .iter()
        .map(|l| l["outcome"].as_str().unwrap_or(""))
        .collect();
    let expect = |o: &str| outcomes.iter().filter(|x| **x == o).count();
    assert_eq!(expect("bad_request"), 7);
    assert_eq!(expect("no_route"), 1);
    assert_eq!(expect("unauthorized"), 3);
    assert_eq!(expect("payload_too_large"), 2);
    assert_eq!(expect("upstream_error"), 2);
    assert_eq!(expect("ok"), 2);

    // Every request counted exactly once in the metrics.
    let sum = gw.counter_sum("wasmcustom.llm_gateway_requests_total");
    assert_eq!(sum as usize, total, "{}", gw.stats());
}

#[test]
fn metrics_are_labelled_in_prometheus() {
    let (_fake, gw) = demo();
    for _ in 0..3 {
        assert_eq!(chat(&gw, &hello("gpt-4o-mini"), &[]).status, 200);
    }
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Hello"}]});
    assert_eq!(
        chat(&gw, &body, &[("x-fake-completion-tokens", "4")]).status,
        200
    );
    assert_eq!(
        chat(
            &gw,
            &hello("gpt-4o-mini"),
            &[("authorization", "Bearer nope")]
        )
        .status,
        401
    );
    gw.access_log(5);
    let prom = gw.prometheus();
    let want = [
        r#"llm_gateway_requests_total{gen_ai_request_model="gpt-4o-mini",gen_ai_provider_name="openai",consumer="demo",outcome="ok"} 4"#,
        r#"llm_gateway_requests_total{gen_ai_request_model="none",gen_ai_provider_name="none",consumer="none",outcome="unauthorized"} 1"#,
        // 3 x 8 prompt tokens + 8 for the stream.
        r#"llm_gateway_tokens_total{gen_ai_request_model="gpt-4o-mini",gen_ai_provider_name="openai",consumer="demo",gen_ai_token_type="input"} 32"#,
    ];
    for w in want {
        assert!(
            prom.lines().any(|l| normalise(l) == normalise(w)),
            "missing {w}\n{prom}"
        );
    }
    for histogram in [
        "gen_ai_client_token_usage_bucket",
        "gen_ai_server_request_duration_ms_bucket",
        "gen_ai_server_time_to_first_token_ms_bucket",
    ] {
        assert!(
            prom.lines()
                .any(|l| l.starts_with(histogram)
                    && l.contains(r#"gen_ai_request_model="gpt-4o-mini""#)),
            "missing {histogram}\n{prom}"
        );
    }
}

/// Prometheus label order is Envoy's choice: compare label sets.
fn normalise(line: &str) -> (String, Vec<String>, String) {
    let (name, rest) = line.split_once('{').unwrap_or((line, ""));
    let (labels, value) = rest.rsplit_once('}').unwrap_or(("", rest));
    let mut l: Vec<String> = labels.split(',').map(str::to_string).collect();
    l.sort();
    (name.to_string(), l, value.trim().to_string())
}

#[test]
fn invalid_config_is_rejected_naming_the_field() {
    let fake = Fake::start(None);
    let bad = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "routes": [{"match": {"model": "gpt-*"}, "to": {"provider": "opneai"}}]
    });
    let opts = Options {
        plugin_config: Some(bad),
        workers: 1,
        ..Options::default()
    };
    match Gateway::try_start(&fake, opts) {
        Ok(_) => panic!("Envoy accepted an invalid configuration"),
        Err(log) => assert!(
            log.contains(
                r#"invalid configuration: routes[0].to.provider: unknown provider "opneai""#
            ),
            "{log}"
        ),
    }
    // A provider key missing from the VM environment is also a configuration error.
    let opts = Options {
        workers: 1,
        env: vec![("OPENAI_API_KEY".into(), "x".into())],
        ..Options::default()
    };
    match Gateway::try_start(&fake, opts) {
        Ok(_) => panic!("Envoy started without BACKUP_API_KEY"),
        Err(log) => assert!(
            log.contains("providers.backup.api_key_env: environment variable BACKUP_API_KEY"),
            "{log}"
        ),
    }
}

#[test]
fn other_endpoints_and_pass_through() {
    let (_fake, gw) = demo();
    let key = [
        ("authorization", "Bearer sk-gateway-demo"),
        ("content-type", "application/json"),
    ];
    // Legacy completions, streamed, counted.
    let r = post(
        &gw.url("/v1/completions"),
        &key,
        br#"{"model":"gpt-4o-mini","prompt":"Hello, world!","stream":true}"#,
    );
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("\"usage\":{"));
    let line = gw.access_log(1).pop().unwrap();
    assert_eq!(
        (line["endpoint"].as_str(), line["prompt_tokens"].as_str()),
        (Some("completions"), Some("4"))
    );
    // Requests the filter does not handle: untouched, and the route decides.
    let r = post(&gw.url("/v1/files"), &key, b"{}");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "unknown_url");
    // A body the filter did not need to change reaches the provider as sent, byte for byte.
    let body = b"{\"model\" : \"gpt-4o-mini\",\n \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}], \"temperature\": 0.25}";
    let r = post(&gw.url("/v1/chat/completions"), &key, body);
    assert_eq!(r.status, 200);
    use sha2::Digest;
    assert_eq!(
        r.header("x-fake-received-body-sha256").unwrap(),
        hex::encode(sha2::Sha256::digest(body))
    );
}

/// Istio's WasmPlugin cannot set `allow_on_headers_stop_iteration`: with `body_routing: false`
/// the filter routes on the headers, never holds them, and still accounts for the request.
#[test]
fn headers_only_mode_without_allow_on_headers_stop_iteration() {
    let fake = Fake::start(None);
    let config = json!({
        "body_routing": false,
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
                      "backup": {"cluster": "backup", "auth": "api-key", "api_key_env": "BACKUP_API_KEY"}},
        "routes": [{"match": {"header": {"name": "x-llm-provider", "value": "backup"}}, "to": {"provider": "backup"}}],
        "default": {"to": {"provider": "openai"}},
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}]
    });
    let opts = Options {
        plugin_config: Some(config),
        edit: Some(Box::new(|b: &mut Value| {
            let wasm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"];
            wasm.as_object_mut()
                .unwrap()
                .remove("allow_on_headers_stop_iteration");
        })),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);

    let r = chat(&gw, &hello("gpt-4o-mini"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&r), "openai");
    let r = chat(&gw, &hello("gpt-4o"), &[("x-llm-provider", "backup")]);
    assert_eq!(served_by(&r), "backup");
    // The body reaches the provider untouched (no include_usage added, no rewrite).
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Hello"}]});
    let r = chat(&gw, &body, &[("x-fake-completion-tokens", "5")]);
    assert_eq!(r.header("x-fake-received-include-usage"), Some("false"));
    use sha2::Digest;
    assert_eq!(
        r.header("x-fake-received-body-sha256").unwrap(),
        hex::encode(sha2::Sha256::digest(body.to_string().as_bytes()))
    );
    // Strangers are still refused before anything is forwarded.
    let r = post(
        &gw.url("/v1/chat/completions"),
        &[("authorization", "Bearer nope")],
        b"{}",
    );
    assert_eq!(r.status, 401);
    assert!(r.header("x-fake-received-model").is_none());

    let log = gw.access_log(4);
    assert_eq!(log[0]["prompt_tokens"], "8", "{}", log[0]);
    assert_eq!(log[0]["request_model"], "gpt-4o-mini");
    assert_eq!(log[1]["provider"], "backup");
    // The stream's completion is counted from its deltas, flagged as an estimate.
    assert_eq!(log[2]["completion_tokens"], "5", "{}", log[2]);
    assert_eq!(log[2]["usage_estimated"], "true");
    assert_eq!(log[3]["outcome"], "unauthorized");
}

/// A provider that dies mid-stream: the client gets what was sent, and the request is counted
/// once, as incomplete, with the completion estimated from what did arrive.
#[test]
fn stream_cut_by_the_provider_is_counted_once_as_incomplete() {
    let (_fake, gw) = demo();
    let body = json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "Hello"}]});
    let mut r = agent()
        .post(&gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {DEMO_KEY}"))
        .header("x-fake-completion-tokens", "20")
        .header("x-fake-abort-after-events", "6")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut text = String::new();
    // The body ends in an error (the connection was reset); keep what arrived.
    let _ = r.body_mut().as_reader().read_to_string(&mut text);
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(text.contains("\"content\":\" quick\""), "{text}");

    let log = gw.access_log(1);
    assert_eq!(log.len(), 1);
    let line = &log[0];
    assert_eq!(line["outcome"], "stream_incomplete", "{line}");
    assert_eq!(line["usage_estimated"], "true");
    // Six events: the role chunk and five content pieces of one token each.
    assert_eq!(line["completion_tokens"], "5", "{line}");
    assert_eq!(line["prompt_tokens"], "8");
    let stats = gw.stats();
    assert_eq!(
        gw.counter_sum("wasmcustom.llm_gateway_requests_total"),
        1,
        "{stats}"
    );
    assert!(
        stats.contains("outcome=.=stream_incomplete;.;: 1"),
        "{stats}"
    );
}

/// The shipped bootstraps print every access-log property the filter writes and turn every
/// metric label into a Prometheus label (`names` is the one list of both).
#[test]
fn shipped_bootstraps_cover_every_property_and_label() {
    use llm_gateway::names::{metric, prop};
    for file in ["envoy/gateway.yaml", "k8s/standalone/base/envoy.yaml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for p in prop::ALL {
            assert!(
                text.contains(&format!("%FILTER_STATE(wasm.{p}:PLAIN)%")),
                "{file} does not log {p}"
            );
        }
        for t in metric::ALL_TAGS {
            assert!(
                text.contains(&format!("{{tag_name: {t}, regex: '({t}=\\.=(.*?);\\.;)'}}")),
                "{file} lacks the stats tag {t}"
            );
        }
    }
}
