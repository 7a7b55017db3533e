//! Google Gemini (`format: gemini`) and Vertex AI (`format: vertex`, the Gemini and the Claude
//! publishers) in real Envoy (2 workers), all through one Envoy running the demo's
//! configuration: OpenAI chat, Responses and Anthropic Messages clients, JSON and stream; tool
//! calls round-trip (thought signatures kept for Gemini); usage in the answer, the usage event,
//! the token counters and the access log is the provider's; the providers' errors reach each
//! client in its own format; a stream the provider cuts, and one ending in an in-band error,
//! are counted once (requests counter, access log, usage event); a 429 reaches the chat client
//! as `rate_limit_exceeded`; Vertex requests carry tokens the fake metadata server issued,
//! refreshed before they expire.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::answers::*;
use support::usage::*;
use support::*;

/// Lifetime of the tokens the fake metadata server issues in this file.
const TOKEN_TTL_SECS: u64 = 3;

/// A model of the demo, the provider (its metric label) it goes to and whether it speaks
/// Gemini's wire (or Anthropic's, Claude on Vertex).
#[derive(Debug, Clone, Copy)]
struct Target {
    model: &'static str,
    provider: &'static str,
    gemini_wire: bool,
}

const TARGETS: [Target; 3] = [
    Target {
        model: "gemini-2.5-flash",
        provider: "gemini",
        gemini_wire: true,
    },
    Target {
        model: "vertex-gemini-2.5-flash",
        provider: "vertex",
        gemini_wire: true,
    },
    Target {
        model: "vertex-claude-sonnet-4-5",
        provider: "vertex",
        gemini_wire: false,
    },
];

struct World {
    _fake: Fake,
    sink: Collector,
    gw: Gateway,
}

fn start() -> World {
    let ttl = TOKEN_TTL_SECS.to_string();
    let fake = Fake::start_args(None, &[], &["--gcp-token-ttl-secs", &ttl]);
    let sink = Collector::start(&[]);
    let sink_port = sink.port;
    let mut c = demo_config();
    c["usage_export"] =
        json!({"cluster": "usage", "format": "json", "batch_size": 1, "flush_interval_ms": 20});
    // The error cases make each provider answer 429 and then ask it again.
    let opts = Options {
        plugin_config: Some(without_cooldown(c)),
        edit: Some(Box::new(move |b: &mut Value| {
            b["static_resources"]["clusters"]
                .as_array_mut()
                .expect("clusters")
                .push(http_cluster("usage", sink_port));
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

/// What the fake is told to report, and the figures the client must then see: 5 output tokens
/// (for Gemini 2 of them thoughts), 3 input tokens read from the cache.
fn usage_controls(t: Target) -> Vec<(&'static str, &'static str)> {
    if t.gemini_wire {
        vec![
            ("x-fake-completion-tokens", "3"),
            ("x-fake-reasoning-tokens", "2"),
            ("x-fake-cached-tokens", "3"),
        ]
    } else {
        vec![
            ("x-fake-completion-tokens", "5"),
            ("x-fake-cache-read-tokens", "3"),
        ]
    }
}

/// A Vertex answer's token, as the fake saw it: valid when used (the fake refuses an expired
/// one), its serial.
fn token_serial(r: &Resp, case: &str) -> u64 {
    let left = r.header("x-fake-token-ttl-left-ms").map(str::to_string);
    assert!(
        left.as_deref().is_some_and(|l| l.parse::<u64>().is_ok()),
        "{case}: a Vertex request without a valid token: {:?}",
        r.headers
    );
    r.num("x-fake-token-serial")
}

/// Every model, client API, JSON and stream: the answer in the client's shape, usage equal to
/// the provider's in the answer, the token counters, the usage event and the access log.
fn answers_and_usage(w: &World) {
    for t in TARGETS {
        for api in APIS {
            for stream in [false, true] {
                let case = format!("{}, {api:?}, stream {stream}", t.model);
                let id = format!("usage-{}-{api:?}-{stream}", t.model);
                let before = metered(&w.gw, t.provider);
                let mut h = usage_controls(t);
                h.push(("x-request-id", &id));
                let r = api.send(&w.gw, &api.ask(t.model, "Hello there", stream, false), &h);
                let a = api.read(&r, stream);
                assert!(!a.text.is_empty() && a.call.is_none(), "{case}: {a:?}");
                let prompt = r.num("x-fake-prompt-tokens");
                let want = if t.gemini_wire {
                    Figures {
                        input: prompt,
                        output: 5,
                        cached: 3,
                        reasoning: if api == Api::Messages { 0 } else { 2 },
                    }
                } else {
                    Figures {
                        input: prompt,
                        output: 5,
                        cached: 3,
                        reasoning: 0,
                    }
                };
                assert!(want.input > want.cached, "{case}: {:?}", r.headers);
                assert_eq!(a.usage, Some(want), "{case}: the client's usage");
                let metered_want = Figures {
                    reasoning: if t.gemini_wire { 2 } else { 0 },
                    ..want
                };
                let e = event_of(&w.sink, &id);
                assert_eq!(
                    event_figures(&e),
                    metered_want,
                    "{case}: the usage event {e}"
                );
                assert_eq!(e["provider"], t.provider, "{case}: {e}");
                assert_eq!(e["stream"], stream, "{case}: {e}");
                assert_eq!(e["usage_estimated"], false, "{case}: {e}");
                assert_eq!(
                    metered(&w.gw, t.provider).minus(before),
                    metered_want,
                    "{case}: the token counters"
                );
                let line = log_of(&w.gw, &id);
                assert_eq!(
                    logged_figures(&line),
                    metered_want,
                    "{case}: the access log {line}"
                );
                assert_eq!(line["provider"], t.provider, "{case}: {line}");
                assert_eq!(line["outcome"], "ok", "{case}: {line}");
                assert_eq!(line["usage_estimated"], "false", "{case}: {line}");
                assert_eq!(
                    line["counted_prompt_estimated"], "true",
                    "{case}: the gateway's own count is an estimate for these models: {line}"
                );
                if t.provider == "vertex" {
                    token_serial(&r, &case);
                }
            }
        }
    }
}

/// Every model, client API, JSON and stream: the model calls the tool, the client hands the
/// result back (the fake refuses a Gemini history whose call lost its thought signature), the
/// model answers in text.
fn tool_calls_round_trip(w: &World) {
    for t in TARGETS {
        for api in APIS {
            for stream in [false, true] {
                let case = format!("{}, {api:?}, stream {stream}", t.model);
                // Thoughts make Gemini sign its function call.
                let tool = [
                    ("x-fake-tool-call", "weather"),
                    ("x-fake-reasoning-tokens", "2"),
                ];
                tool_round_trip(&w.gw, api, t.model, stream, &tool, &case, |_| {});
            }
        }
    }
}

/// The providers' errors, as each client's API says them: (status the fake answers, the
/// client's status, error types for chat, Responses, Messages).
fn errors_are_mapped(w: &World) {
    let cases: [(&str, u16, [&str; 3]); 5] = [
        (
            "400",
            400,
            [
                "invalid_request_error",
                "invalid_request_error",
                "invalid_request_error",
            ],
        ),
        ("429", 429, ["requests", "requests", "rate_limit_error"]),
        (
            "403",
            403,
            ["permission_error", "permission_error", "permission_error"],
        ),
        ("500", 500, ["server_error", "server_error", "api_error"]),
        ("503", 503, ["server_error", "server_error", "api_error"]),
    ];
    let mut wrong = vec![];
    for t in TARGETS {
        for (fake_status, status, kinds) in cases {
            for (api, kind) in APIS.into_iter().zip(kinds) {
                for stream in [false, true] {
                    let case = format!("{}, {api:?}, stream {stream}, {fake_status}", t.model);
                    let r = api.send(
                        &w.gw,
                        &api.ask(t.model, "Hello", stream, false),
                        &[("x-fake-status", fake_status)],
                    );
                    if error_type(api, &r) != (status, kind.to_string()) {
                        wrong.push(format!("{case}: {} {}", r.status, r.text()));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Vertex requests spread over more than two token lifetimes: every one carried a token the
/// fake issued and had not expired (it refuses others), and the gateway changed tokens.
fn vertex_tokens_are_refreshed(w: &World) {
    let mut serials = std::collections::BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(2 * TOKEN_TTL_SECS + 1);
    let mut n = 0;
    while Instant::now() < end {
        for t in TARGETS.iter().filter(|t| t.provider == "vertex") {
            let case = format!("{} #{n}", t.model);
            let r = Api::Chat.send(&w.gw, &Api::Chat.ask(t.model, "Hello", false, false), &[]);
            Api::Chat.read(&r, false);
            serials.insert(token_serial(&r, &case));
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        serials.len() >= 2,
        "one token over {n} requests: {serials:?}"
    );
}

/// The requests counter of `provider`.
fn requests(w: &World, provider: &str) -> f64 {
    prom_sum(
        &w.gw.prometheus(),
        "llm_gateway_requests_total",
        &[("gen_ai_provider_name", provider)],
    )
}

/// Waits until `provider`'s requests counter reaches `want` (a little longer, so a second count
/// would show), then asserts it is exactly that.
fn assert_requests(w: &World, provider: &str, want: f64, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests(w, provider) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        requests(w, provider),
        want,
        "{case}: {provider}'s requests_total"
    );
}

/// The access-log lines of request `id`.
fn log_lines(w: &World, id: &str) -> usize {
    w.gw.access_log(0)
        .iter()
        .filter(|l| l["request_id"] == id)
        .count()
}

/// A stream the provider cuts, for every model and client API: the client's stream has no end,
/// one access-log line with outcome `stream_incomplete`, one usage event, one request in the
/// provider's requests counter.
fn cut_streams_are_counted_once(w: &World) {
    let providers = ["gemini", "vertex"];
    let before = providers.map(|p| requests(w, p));
    // All at once: Envoy holds each cut connection open for its delayed-close timeout (1 s).
    std::thread::scope(|scope| {
        for t in TARGETS {
            for api in APIS {
                scope.spawn(move || {
                    let case = format!("{}, {api:?}", t.model);
                    let id = format!("cut-{}-{api:?}", t.model);
                    let h = [
                        ("x-fake-abort-after-events", "3"),
                        ("x-fake-completion-tokens", "20"),
                        ("x-request-id", id.as_str()),
                    ];
                    let r = api.send(&w.gw, &api.ask(t.model, "Hello", true, false), &h);
                    assert_eq!(r.status, 200, "{case}");
                    let text = r.text();
                    for end in ["[DONE]", "response.completed", "message_stop"] {
                        assert!(!text.contains(end), "{case}: {text}");
                    }
                    let line = log_of(&w.gw, &id);
                    assert_eq!(line["outcome"], "stream_incomplete", "{case}: {line}");
                    assert_eq!(line["provider"], t.provider, "{case}: {line}");
                });
            }
        }
    });
    for (p, b) in providers.into_iter().zip(before) {
        let sent = TARGETS.iter().filter(|t| t.provider == p).count() * APIS.len();
        assert_requests(w, p, b + sent as f64, "cut streams");
    }
    for t in TARGETS {
        for api in APIS {
            let id = format!("cut-{}-{api:?}", t.model);
            assert_eq!(log_lines(w, &id), 1, "{id}: access-log lines");
            let e = event_of(&w.sink, &id);
            assert_eq!(e["provider"], t.provider, "{id}: {e}");
            assert_eq!(e["stream"], true, "{id}: {e}");
        }
    }
}

/// An error the provider sends inside its stream (Gemini: a Google error body as the last SSE
/// event, UNAVAILABLE; Claude on Vertex: Anthropic's `event: error`, overloaded_error): an
/// error event in the client's stream, not its normal end, counted once.
fn in_band_stream_errors(w: &World) {
    for t in TARGETS {
        let before = requests(w, t.provider);
        for api in APIS {
            let case = format!("{}, {api:?}", t.model);
            let id = format!("in-band-{}-{api:?}", t.model);
            let h = [
                ("x-fake-stream-error-after-events", "2"),
                ("x-request-id", id.as_str()),
            ];
            let r = api.send(&w.gw, &api.ask(t.model, "Hello", true, false), &h);
            assert_eq!(r.status, 200, "{case}: {}", r.text());
            let text = r.text();
            let error = stream_error(api, &text, &case);
            match api {
                Api::Chat => {
                    // Today the error is the stream's last event, no `[DONE]` after it (the
                    // Bedrock path sends one).
                    assert!(!text.contains("[DONE]"), "{case}: {text}");
                    assert_eq!(error["type"], "server_error", "{case}: {text}");
                    assert_eq!(error["code"], "provider_unavailable", "{case}: {text}");
                }
                Api::Responses => {
                    assert_eq!(error["code"], "provider_unavailable", "{case}: {text}")
                }
                Api::Messages => {
                    // Google's UNAVAILABLE is Anthropic's api_error (as a JSON 503 is); Claude's own
                    // overloaded_error passes as it is.
                    let want = if t.gemini_wire {
                        "api_error"
                    } else {
                        "overloaded_error"
                    };
                    assert_eq!(error["type"], want, "{case}: {text}");
                }
            }
            let line = log_of(&w.gw, &id);
            assert_eq!(line["provider"], t.provider, "{case}: {line}");
            // An error the provider sent in-band, not a stream that was merely cut.
            assert_eq!(line["outcome"], "stream_error", "{case}: {line}");
            assert_eq!(log_lines(w, &id), 1, "{case}: access-log lines");
            event_of(&w.sink, &id);
        }
        assert_requests(w, t.provider, before + 3.0, t.model);
    }
}

/// A 429 (Gemini and Vertex Gemini: RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` detail;
/// Claude on Vertex: Vertex's own RESOURCE_EXHAUSTED quota error, Google-shaped; none with a
/// `retry-after` header, as Google sends them) reaches the chat client as 429 with OpenAI's
/// `rate_limit_exceeded` code, JSON and stream, and without a `retry-after`: the gateway does
/// not turn `retryDelay` into one (yet).
fn rate_limits_reach_chat(w: &World) {
    for t in TARGETS {
        for stream in [false, true] {
            let case = format!("{}, stream {stream}", t.model);
            let r = Api::Chat.send(
                &w.gw,
                &Api::Chat.ask(t.model, "Hello", stream, false),
                &[("x-fake-status", "429")],
            );
            let v = r.json();
            assert_eq!(r.status, 429, "{case}: {v}");
            assert_eq!(v["error"]["type"], "requests", "{case}: {v}");
            assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{case}: {v}");
            assert_eq!(
                r.header("retry-after"),
                None,
                "{case}: the provider sent no retry-after, and the gateway does not make one \
                 of RetryInfo's retryDelay"
            );
        }
    }
}

#[test]
fn gemini_and_vertex_serve_every_client_api() {
    let w = start();
    answers_and_usage(&w);
    tool_calls_round_trip(&w);
    errors_are_mapped(&w);
    cut_streams_are_counted_once(&w);
    in_band_stream_errors(&w);
    rate_limits_reach_chat(&w);
    vertex_tokens_are_refreshed(&w);
}
