//! AWS Bedrock in real Envoy (2 workers), all through one Envoy running the demo's
//! configuration: OpenAI chat, Responses and Anthropic Messages clients reach Bedrock's Converse
//! API (JSON and event-stream), tool calls round-trip, usage in the metrics, usage events and
//! access log is the provider's, Bedrock's errors reach each client in its own format, a cut
//! stream is counted once; every request arrives signed by Envoy's SigV4 filter, which the fake
//! verifies (a wrong secret and a body changed after signing are refused); the demo's mixed
//! failover chain openai → bedrock → gemini adapts and signs each attempt; and the official
//! openai and anthropic Python SDKs work through Bedrock, Gemini and Vertex AI.

mod support;

use serde_json::{json, Value};
use support::answers::*;
use support::usage::*;
use support::*;

/// The client's model (the demo's route) and the Bedrock model id it goes to.
const MODEL: &str = "bedrock-claude-sonnet-4-5";
const MODEL_ID: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
/// What the fake is told to report: 5 one-token words, 3 input tokens read from the cache.
const USAGE_CONTROLS: [(&str, &str); 2] = [
    ("x-fake-completion-tokens", "5"),
    ("x-fake-cache-read-tokens", "3"),
];

/// The gateway, the collector of its usage events and the fake behind it (Bedrock, OpenAI,
/// Gemini, Vertex and its metadata server).
struct World {
    _fake: Fake,
    sink: Collector,
    gw: Gateway,
}

/// A Lua filter that changes the first `TAMPER` of the request body to `TAMPEr` (one byte, the
/// length kept).
fn tamper_filter() -> Value {
    json!({"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": r#"
function envoy_on_request(h)
  local body = h:body()
  if body == nil then return end
  local s = body:getBytes(0, body:length())
  local i = string.find(s, "TAMPER", 1, true)
  if i then body:setBytes(string.sub(s, 1, i + 4) .. "r" .. string.sub(s, i + 6)) end
end
"#}}})
}

/// The upstream HTTP filters of a cluster.
fn filters(c: &mut Value) -> &mut Vec<Value> {
    c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        ["http_filters"]
        .as_array_mut()
        .expect("upstream http_filters")
}

/// The demo's configuration, with routes to the test's Bedrock clusters and chains and usage
/// events exported to the collector.
fn config() -> Value {
    let mut c = demo_config();
    let providers = c["providers"].as_object_mut().expect("providers");
    for name in [
        "bedrock-wrong-secret",
        "bedrock-tampered",
        "bedrock-lua-first",
    ] {
        providers.insert(name.into(), json!({"cluster": name, "format": "bedrock"}));
    }
    let routes = c["routes"].as_array_mut().expect("routes");
    for name in [
        "bedrock-wrong-secret",
        "bedrock-tampered",
        "bedrock-lua-first",
    ] {
        routes.push(json!({"name": name, "match": {"model": name},
                           "to": {"provider": name, "model": MODEL_ID}}));
    }
    // The demo's chain with its OpenAI member unreachable.
    routes.push(
        json!({"name": "resilient-openai-dead", "match": {"model": "resilient-openai-dead"},
                       "to": {"provider": "openai", "model": "gpt-4o-mini"},
                       "fallback": {"cluster": "failover-dead-openai",
                                    "to": [{"provider": "bedrock", "model": MODEL_ID},
                                           {"provider": "gemini", "model": "gemini-2.5-flash"}]}}),
    );
    c["usage_export"] =
        json!({"cluster": "usage", "format": "json", "batch_size": 1, "flush_interval_ms": 20});
    // The error cases make Bedrock throttle (429) and then ask it again.
    without_cooldown(c)
}

fn start() -> World {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let (dead_port, sink_port) = (free_port(), sink.port);
    let opts = Options {
        plugin_config: Some(config()),
        edit: Some(Box::new(move |b: &mut Value| {
            let clusters = b["static_resources"]["clusters"]
                .as_array_mut()
                .expect("clusters");
            let find = |name: &str| {
                clusters
                    .iter()
                    .find(|c| c["name"] == name)
                    .cloned()
                    .unwrap_or_else(|| panic!("gateway.yaml has no cluster {name}"))
            };
            let bedrock = find("bedrock");
            let chain = find("failover-openai-bedrock-gemini");

            // Bedrock clusters signing with a wrong secret, changing the body after the
            // signature, and (the control) changing it before.
            let mut wrong = bedrock.clone();
            assert_eq!(
                filters(&mut wrong)[0]["name"],
                "envoy.filters.http.aws_request_signing"
            );
            filters(&mut wrong)[0]["typed_config"]["credential_provider"] = json!({
                "inline_credential": {"access_key_id": AWS_ACCESS_KEY_ID,
                                      "secret_access_key": "not-the-secret-the-fake-knows"}});
            let mut tampered = bedrock.clone();
            filters(&mut tampered).insert(1, tamper_filter());
            let mut lua_first = bedrock.clone();
            filters(&mut lua_first).insert(0, tamper_filter());
            for (name, mut c) in [
                ("bedrock-wrong-secret", wrong),
                ("bedrock-tampered", tampered),
                ("bedrock-lua-first", lua_first),
            ] {
                c["name"] = name.into();
                c["load_assignment"]["cluster_name"] = name.into();
                clusters.push(c);
            }
            // The demo's chain, with an OpenAI cluster nobody listens on.
            clusters.push(http_cluster("openai-dead", dead_port));
            clusters.push(http_cluster("usage", sink_port));
            let mut c = chain;
            c["name"] = "failover-dead-openai".into();
            c["cluster_type"]["typed_config"]["clusters"] =
                json!([{"name": "openai-dead"}, {"name": "bedrock"}, {"name": "gemini"}]);
            clusters.push(c);
        })),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);
    World {
        _fake: fake,
        sink,
        gw,
    }
}

/// The fake's record that a request reached Bedrock's Converse API signed, for the model id.
fn assert_signed_converse(r: &Resp, stream: bool, case: &str) {
    assert_eq!(
        r.header("x-fake-aws-auth"),
        Some("sigv4"),
        "{case}: {:?}",
        r.headers
    );
    assert_eq!(r.header("x-fake-received-model"), Some(MODEL_ID), "{case}");
    let op = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    assert_eq!(
        r.header("x-fake-received-path"),
        Some(format!("/model/{}/{op}", MODEL_ID.replace(':', "%3A")).as_str()),
        "{case}"
    );
}

/// Every client API, JSON and stream: the answer in the client's shape, usage equal to the
/// provider's in the answer, the token counters, the usage event and the access log.
fn answers_and_usage(w: &World) {
    for api in APIS {
        for stream in [false, true] {
            let case = format!("{api:?}, stream {stream}");
            let id = format!("usage-{api:?}-{stream}");
            let before = metered(&w.gw, "bedrock");
            let mut h = USAGE_CONTROLS.to_vec();
            h.push(("x-request-id", &id));
            let r = api.send(&w.gw, &api.ask(MODEL, "Hello there", stream, false), &h);
            let a = api.read(&r, stream);
            assert_signed_converse(&r, stream, &case);
            assert!(!a.text.is_empty() && a.call.is_none(), "{case}: {a:?}");
            let want = Figures {
                input: r.num("x-fake-prompt-tokens"),
                output: 5,
                cached: 3,
                reasoning: 0,
            };
            assert!(want.input > want.cached, "{case}");
            assert_eq!(a.usage, Some(want), "{case}: the client's usage");
            let e = event_of(&w.sink, &id);
            assert_eq!(event_figures(&e), want, "{case}: the usage event {e}");
            assert_eq!(e["provider"], "bedrock", "{case}: {e}");
            assert_eq!(e["stream"], stream, "{case}: {e}");
            assert_eq!(e["usage_estimated"], false, "{case}: {e}");
            assert_eq!(
                metered(&w.gw, "bedrock").minus(before),
                want,
                "{case}: the token counters"
            );
            let line = log_of(&w.gw, &id);
            assert_eq!(logged_figures(&line), want, "{case}: the access log {line}");
            assert_eq!(line["provider"], "bedrock", "{case}: {line}");
            assert_eq!(line["upstream_model"], MODEL_ID, "{case}: {line}");
            assert_eq!(line["outcome"], "ok", "{case}: {line}");
            assert_eq!(line["usage_estimated"], "false", "{case}: {line}");
        }
    }
}

/// Every client API, JSON and stream: the model calls the tool, the client hands the result
/// back, the model answers in text.
fn tool_calls_round_trip(w: &World) {
    for api in APIS {
        for stream in [false, true] {
            let case = format!("{api:?}, stream {stream}");
            let tool = [("x-fake-tool-call", "weather")];
            tool_round_trip(&w.gw, api, MODEL, stream, &tool, &case, |r| {
                assert_signed_converse(r, stream, &case)
            });
        }
    }
}

/// Bedrock's errors, as each client's API says them.
fn errors_are_mapped(w: &World) {
    let cases: [(&str, &str, u16, [&str; 3]); 4] = [
        (
            "x-fake-status",
            "429",
            429,
            ["requests", "requests", "rate_limit_error"],
        ),
        (
            "x-fake-error-type",
            "ModelNotReadyException",
            429,
            ["requests", "requests", "rate_limit_error"],
        ),
        (
            "x-fake-status",
            "400",
            400,
            [
                "invalid_request_error",
                "invalid_request_error",
                "invalid_request_error",
            ],
        ),
        (
            "x-fake-status",
            "424",
            502,
            ["server_error", "server_error", "api_error"],
        ),
    ];
    for (header, value, status, kinds) in cases {
        for (api, kind) in APIS.into_iter().zip(kinds) {
            for stream in [false, true] {
                let case = format!("{api:?}, stream {stream}, {header}: {value}");
                let r = api.send(
                    &w.gw,
                    &api.ask(MODEL, "Hello", stream, false),
                    &[(header, value)],
                );
                assert_eq!(
                    error_type(api, &r),
                    (status, kind.to_string()),
                    "{case}: {}",
                    r.text()
                );
                if api != Api::Messages {
                    let code = r.json()["error"]["code"].clone();
                    if status == 429 {
                        assert_eq!(code, "rate_limit_exceeded", "{case}");
                    }
                }
            }
        }
    }
}

/// An exception Bedrock sends inside its stream: an error event in the client's stream.
fn in_band_stream_errors(w: &World) {
    for api in APIS {
        let id = format!("in-band-{api:?}");
        let h = [
            ("x-fake-stream-error-after-events", "2"),
            ("x-fake-error-type", "ThrottlingException"),
            ("x-request-id", id.as_str()),
        ];
        let r = api.send(&w.gw, &api.ask(MODEL, "Hello", true, false), &h);
        assert_eq!(r.status, 200, "{api:?}: {}", r.text());
        let text = r.text();
        let error = stream_error(api, &text, &format!("{api:?}"));
        match api {
            Api::Chat => {
                assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
                assert_eq!(error["type"], "requests", "{text}");
                assert_eq!(error["code"], "rate_limit_exceeded", "{text}");
            }
            Api::Responses => assert_eq!(error["code"], "rate_limit_exceeded", "{text}"),
            Api::Messages => assert_eq!(error["type"], "rate_limit_error", "{text}"),
        }
        let line = log_of(&w.gw, &id);
        assert_eq!(line["provider"], "bedrock", "{line}");
        assert_ne!(line["outcome"], "ok", "{api:?}: {line}");
    }
}

/// A stream the provider cuts: one access-log line, outcome `stream_incomplete`, one request in
/// the requests counter.
fn cut_streams_are_counted_once(w: &World) {
    let requests = || {
        prom_sum(
            &w.gw.prometheus(),
            "llm_gateway_requests_total",
            &[("gen_ai_provider_name", "bedrock")],
        )
    };
    let before = requests();
    // At once: Envoy holds each cut connection open for its delayed-close timeout (1 s).
    std::thread::scope(|scope| {
        for api in APIS {
            scope.spawn(move || {
                let id = format!("cut-{api:?}");
                let h = [
                    ("x-fake-abort-after-events", "3"),
                    ("x-fake-completion-tokens", "20"),
                    ("x-request-id", id.as_str()),
                ];
                let r = api.send(&w.gw, &api.ask(MODEL, "Hello", true, false), &h);
                assert_eq!(r.status, 200, "{api:?}");
                let text = r.text();
                for end in ["[DONE]", "response.completed", "message_stop"] {
                    assert!(!text.contains(end), "{api:?}: {text}");
                }
                let line = log_of(&w.gw, &id);
                assert_eq!(line["outcome"], "stream_incomplete", "{api:?}: {line}");
                assert_eq!(line["provider"], "bedrock", "{api:?}: {line}");
            });
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while requests() < before + 3.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(requests(), before + 3.0, "{}", w.gw.prometheus());
    let log = w.gw.access_log(0);
    for api in APIS {
        let id = format!("cut-{api:?}");
        let lines = log
            .iter()
            .filter(|l| l["request_id"] == id.as_str())
            .count();
        assert_eq!(lines, 1, "{id}: {log:?}");
    }
}

/// The fake refuses a signature made with a wrong secret, and one whose body was changed after
/// signing (a Lua filter after the signer changes one byte); the same change before the signer
/// is accepted, so it is the signature that covers the body.
fn signatures_are_checked(w: &World) {
    for api in [Api::Chat, Api::Messages] {
        let r = api.send(
            &w.gw,
            &api.ask("bedrock-wrong-secret", "Hello", false, false),
            &[],
        );
        let want = if api == Api::Chat {
            "invalid_request_error"
        } else {
            "permission_error"
        };
        assert_eq!(
            error_type(api, &r),
            (403, want.to_string()),
            "{api:?}: {}",
            r.text()
        );
        assert!(r.text().contains("signature"), "{}", r.text());
        assert_eq!(r.header("x-fake-aws-auth"), None);
    }
    let ask = |model: &str| Api::Chat.ask(model, "Hello TAMPER", false, false);
    let plain = Api::Chat.send(&w.gw, &ask(MODEL), &[]);
    let before = Api::Chat.send(&w.gw, &ask("bedrock-lua-first"), &[]);
    let after = Api::Chat.send(&w.gw, &ask("bedrock-tampered"), &[]);
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(
        before.status,
        200,
        "changed before signing: {}",
        before.text()
    );
    assert_eq!(before.header("x-fake-aws-auth"), Some("sigv4"));
    let sha = |r: &Resp| r.header("x-fake-received-body-sha256").map(str::to_string);
    assert_ne!(sha(&before), sha(&plain), "the Lua filter changes the body");
    assert_eq!(after.status, 403, "changed after signing: {}", after.text());
    assert_eq!(
        sha(&after),
        sha(&before),
        "the same body arrived, signed before the change"
    );
    assert!(after.text().contains("signature"), "{}", after.text());
}

/// The received headers' value of `name`.
fn sent<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(Value::as_str)
}

/// No header the signer sets.
fn assert_no_aws_headers(headers: &Value, case: &str) {
    for name in ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
        assert_eq!(sent(headers, name), None, "{case}: {headers}");
    }
    assert_ne!(
        sent(headers, "host"),
        Some("bedrock-runtime.us-east-1.amazonaws.com"),
        "{case}: {headers}"
    );
}

/// The demo's chain openai → bedrock → gemini, and the same chain with OpenAI unreachable and
/// Bedrock failing: each attempt adapted to its provider, the Bedrock one alone signed.
fn mixed_failover_chains(w: &World) {
    let openai_key = fingerprint(&format!("Bearer {OPENAI_KEY}"));
    // All up: OpenAI answers, unsigned.
    let r = Api::Chat.send(
        &w.gw,
        &Api::Chat.ask("resilient", "Hello", false, false),
        &[("x-request-id", "chain-up")],
    );
    Api::Chat.read(&r, false);
    assert_eq!(
        r.header("x-fake-received-path"),
        Some("/v1/chat/completions")
    );
    let h = r.received_headers();
    assert_eq!(sent(&h, "authorization"), Some(openai_key.as_str()), "{h}");
    assert_no_aws_headers(&h, "openai first");
    let line = log_of(&w.gw, "chain-up");
    assert_eq!(
        (&line["provider"], &line["attempts"]),
        (&json!("openai"), &json!("1")),
        "{line}"
    );

    // OpenAI refuses connections: Bedrock answers, signed, without OpenAI's key; JSON and
    // stream, from each client API.
    for api in APIS {
        for stream in [false, true] {
            let case = format!("openai dead, {api:?}, stream {stream}");
            let id = format!("chain-dead-{api:?}-{stream}");
            let r = api.send(
                &w.gw,
                &api.ask("resilient-openai-dead", "Hello", stream, false),
                &[("x-request-id", &id), ("x-fake-completion-tokens", "4")],
            );
            let a = api.read(&r, stream);
            assert_eq!(a.usage.map(|u| u.output), Some(4), "{case}");
            assert_signed_converse(&r, stream, &case);
            let h = r.received_headers();
            assert_ne!(
                sent(&h, "authorization"),
                Some(openai_key.as_str()),
                "{case}: {h}"
            );
            assert!(sent(&h, "authorization").is_some(), "{case}: {h}");
            assert_eq!(sent(&h, "x-goog-api-key"), None, "{case}: {h}");
            assert!(sent(&h, "x-amz-date").is_some(), "{case}: {h}");
            let line = log_of(&w.gw, &id);
            assert_eq!(line["provider"], "bedrock", "{case}: {line}");
            assert_eq!(line["attempts"], "2", "{case}: {line}");
            assert_eq!(line["failover"], "openai:connect_failure", "{case}: {line}");
            assert_eq!(
                line["upstream_cluster"], "failover-dead-openai",
                "{case}: {line}"
            );
            assert_eq!(line["completion_tokens"], "4", "{case}: {line}");
        }
    }

    // OpenAI refuses connections and Bedrock throttles (429) or its model fails (424, a 502):
    // Gemini answers, with its key and nothing of the others' (the signer's headers dropped).
    for (stream, exception, reason) in [
        (false, "ThrottlingException", "429"),
        (true, "ModelErrorException", "502"),
    ] {
        let case = format!("gemini last, stream {stream}");
        let id = format!("chain-gemini-{stream}");
        let r = Api::Chat.send(
            &w.gw,
            &Api::Chat.ask("resilient-openai-dead", "Hello", stream, false),
            &[("x-request-id", &id), ("x-fake-error-type", exception)],
        );
        Api::Chat.read(&r, stream);
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        assert_eq!(
            r.header("x-fake-received-path"),
            Some(format!("/v1beta/models/gemini-2.5-flash:{method}").as_str()),
            "{case}"
        );
        let h = r.received_headers();
        assert_eq!(
            sent(&h, "x-goog-api-key"),
            Some(fingerprint(GEMINI_KEY).as_str()),
            "{case}: {h}"
        );
        assert_eq!(sent(&h, "authorization"), None, "{case}: {h}");
        assert_no_aws_headers(&h, &case);
        let line = log_of(&w.gw, &id);
        assert_eq!(line["provider"], "gemini", "{case}: {line}");
        assert_eq!(line["attempts"], "3", "{case}: {line}");
        assert_eq!(
            line["failover"],
            format!("openai:connect_failure,bedrock:{reason}"),
            "{case}: {line}"
        );
    }
    let prom = w.gw.prometheus();
    for (provider, reason, n) in [
        ("openai", "connect_failure", 8.0),
        ("bedrock", "429", 1.0),
        ("bedrock", "502", 1.0),
    ] {
        let labels = [("gen_ai_provider_name", provider), ("reason", reason)];
        assert_eq!(
            prom_sum(&prom, "llm_gateway_failovers_total", &labels),
            n,
            "{provider} {reason}: {prom}"
        );
    }
}

/// The official openai and anthropic Python SDKs (tests/sdk/clouds.py) through Bedrock, and
/// through the demo's Gemini and Vertex AI models.
fn official_sdks(w: &World) {
    std::thread::scope(|scope| {
        for models in [
            &[MODEL][..],
            &[
                "gemini-2.5-flash",
                "vertex-gemini-2.5-flash",
                "vertex-claude-sonnet-4-5",
            ],
        ] {
            scope.spawn(move || run_sdk_script_with(&w.gw, "clouds.py", models, "clouds sdk: ok"));
        }
    });
}

#[test]
fn bedrock_serves_every_client_api_signed_by_envoy_and_fails_over_in_mixed_chains() {
    let w = start();
    answers_and_usage(&w);
    tool_calls_round_trip(&w);
    errors_are_mapped(&w);
    in_band_stream_errors(&w);
    cut_streams_are_counted_once(&w);
    signatures_are_checked(&w);
    mixed_failover_chains(&w);
    official_sdks(&w);
}
