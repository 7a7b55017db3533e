//! Tests of what both directions share, and the golden tests: every case under
//! `tests/golden/<direction>/` (see its README) translated and compared, as JSON values, with
//! what it is expected to become.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame};
use serde_json::{json, Value};

use super::*;

const ANSWERED_AT_1: ResponseContext = ResponseContext {
    status: 200,
    created: 1,
    counted_input: 0,
    nonce: 0,
    model: String::new(),
};

#[test]
fn usage_at_the_largest_figures_saturates() {
    let max = u64::MAX;
    let u = usage_to_openai(&json!({"input_tokens": max, "cache_read_input_tokens": 1,
                          "cache_creation_input_tokens": 1, "output_tokens": 2}));
    assert_eq!(u["prompt_tokens"], max);
    assert_eq!(u["total_tokens"], max);
    assert_eq!(u["completion_tokens"], 2);
    let near = usage_to_openai(
        &json!({"input_tokens": max - 3, "cache_read_input_tokens": 1,
                             "output_tokens": 1}),
    );
    assert_eq!(near["prompt_tokens"], max - 2);
    assert_eq!(near["total_tokens"], max - 1);
    // Beyond u64 (a float to serde_json) is the largest, not 0.
    let over: Value =
        serde_json::from_str(r#"{"input_tokens": 1e20, "output_tokens": 3}"#).unwrap();
    assert_eq!(usage_to_openai(&over)["prompt_tokens"], max);
    // Through the whole response and the stream.
    let body = json!({"type": "message", "content": [], "usage":
        {"input_tokens": max, "output_tokens": max}});
    let out: Value = serde_json::from_slice(
        &openai_to_anthropic::translate_response(body.to_string().as_bytes(), &ANSWERED_AT_1)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["usage"]["prompt_tokens"], max);
    assert_eq!(out["usage"]["total_tokens"], max);
    let mut t = openai_to_anthropic::Stream::new(1, true);
    t.event(
        "message_start",
        json!({"type": "message_start", "message":
        {"id": "m", "usage": {"input_tokens": max, "cache_read_input_tokens": max}}})
        .to_string()
        .as_bytes(),
    );
    t.event(
        "message_delta",
        json!({"type": "message_delta", "delta": {},
        "usage": {"output_tokens": max}})
        .to_string()
        .as_bytes(),
    );
    let end = t.event("message_stop", br#"{"type":"message_stop"}"#);
    let chunk: Value = serde_json::from_str(
        end.split("\n\n")
            .next()
            .unwrap()
            .strip_prefix("data: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(chunk["usage"]["prompt_tokens"], max);
    assert_eq!(chunk["usage"]["completion_tokens"], max);
    assert_eq!(chunk["usage"]["total_tokens"], max);
    // And back: more cached than prompt is no underflow.
    let back = usage_to_anthropic(&json!({"prompt_tokens": 5, "completion_tokens": max,
        "prompt_tokens_details": {"cached_tokens": max, "cache_creation_tokens": max}}));
    assert_eq!(back["input_tokens"], 0);
    assert_eq!(back["output_tokens"], max);
}

/// The golden cases' fixed parameters (tests/golden/README.md).
const GOLDEN_MODEL: &str = "claude-sonnet-4-5";
const GOLDEN_DEFAULT_MAX_TOKENS: u64 = 1024;
const GOLDEN_CREATED: u64 = 1_700_000_000;
const GOLDEN_COUNTED_INPUT: u64 = 29;
/// The model a Responses client's request goes to.
const GOLDEN_CHAT_MODEL: &str = "gpt-4o-mini";
/// The model an OpenAI client's request to Gemini goes to.
const GOLDEN_GEMINI_MODEL: &str = "gemini-3-flash-preview";

fn golden_dir(direction: Direction) -> PathBuf {
    let name = match direction {
        Direction::OpenaiToAnthropic => "openai_to_anthropic",
        Direction::AnthropicToOpenai => "anthropic_to_openai",
        Direction::ResponsesToChat => "responses_to_chat",
        Direction::OpenaiToBedrock => "openai_to_bedrock",
        Direction::OpenaiToGemini(_) => "openai_to_gemini",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// A translator's output as JSON, or as a string when it is not JSON.
fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// An SSE text as its events: the name and the data (JSON, or a string when it is not).
fn sse_events(text: &[u8]) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    crate::sse::Parser::new(1 << 20).feed(text, |_, e| {
        events.push((
            String::from_utf8_lossy(e.name).into_owned(),
            as_json(e.data),
        ));
    });
    events
}

/// A request case: the translated body, or the client's error (status and body) when the
/// translation refuses it. The header changes are checked here for every case.
fn golden_request(direction: Direction, body: &[u8]) -> Value {
    let translated = match direction {
        Direction::OpenaiToAnthropic | Direction::OpenaiToBedrock => direction.translate_request(
            body,
            &Target {
                model: GOLDEN_MODEL,
                default_max_tokens: GOLDEN_DEFAULT_MAX_TOKENS,
            },
        ),
        // The filter reads the client's model first, and routes by it.
        Direction::AnthropicToOpenai => anthropic_to_openai::model_of(body).and_then(|model| {
            direction.translate_request(
                body,
                &Target {
                    model: &model,
                    default_max_tokens: GOLDEN_DEFAULT_MAX_TOKENS,
                },
            )
        }),
        Direction::ResponsesToChat => direction.translate_request(
            body,
            &Target {
                model: GOLDEN_CHAT_MODEL,
                default_max_tokens: GOLDEN_DEFAULT_MAX_TOKENS,
            },
        ),
        Direction::OpenaiToGemini(_) => direction.translate_request(
            body,
            &Target {
                model: GOLDEN_GEMINI_MODEL,
                default_max_tokens: GOLDEN_DEFAULT_MAX_TOKENS,
            },
        ),
    };
    match translated {
        Ok(t) => {
            let length = (names::CONTENT_LENGTH, Some(t.body.len().to_string()));
            match direction {
                Direction::OpenaiToAnthropic => assert_eq!(
                    t.headers,
                    [
                        (names::ANTHROPIC_VERSION, Some(API_VERSION.to_string())),
                        length
                    ]
                ),
                Direction::AnthropicToOpenai => {
                    assert_eq!(t.headers, [(names::ANTHROPIC_VERSION, None), length])
                }
                Direction::ResponsesToChat
                | Direction::OpenaiToBedrock
                | Direction::OpenaiToGemini(_) => {
                    assert_eq!(t.headers, [length])
                }
            }
            assert_eq!(
                t.echo.is_some(),
                direction == Direction::ResponsesToChat,
                "only a Responses request has an echo"
            );
            as_json(&t.body)
        }
        Err(e) => {
            let body = match direction {
                Direction::OpenaiToAnthropic
                | Direction::ResponsesToChat
                | Direction::OpenaiToBedrock
                | Direction::OpenaiToGemini(_) => e.body(),
                Direction::AnthropicToOpenai => anthropic_to_openai::local_error_body(&e),
            };
            json!({"status": e.status, "body": as_json(&body)})
        }
    }
}

fn context(status: u32) -> ResponseContext {
    ResponseContext {
        status,
        created: GOLDEN_CREATED,
        counted_input: GOLDEN_COUNTED_INPUT,
        nonce: 0,
        model: String::new(),
    }
}

/// A JSON answer through the response translator, as the filter drives it.
fn golden_json_answer(
    direction: Direction,
    status: u32,
    body: &[u8],
    echo: &ResponsesEcho,
) -> Value {
    let mut t =
        ResponseTranslator::with_echo(direction, "application/json", context(status), echo.clone());
    assert!(t.buffers());
    assert_eq!(t.headers(), [(names::CONTENT_LENGTH, None)]);
    as_json(&t.chunk(body))
}

/// An SSE answer through the response translator, whole and in 7-byte pieces (the same text).
fn golden_stream(direction: Direction, body: &[u8], echo: &ResponsesEcho) -> Vec<u8> {
    let translate = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let ct = "text/event-stream; charset=utf-8";
        let mut t = ResponseTranslator::with_echo(direction, ct, context(200), echo.clone());
        assert!(!t.buffers());
        pieces.flat_map(|p| t.chunk(p)).collect::<Vec<u8>>()
    };
    let whole = translate(&mut std::iter::once(body));
    assert_eq!(translate(&mut body.chunks(7)), whole, "split into pieces");
    whole
}

/// An AWS event-stream answer (`<case>.eventstream.json`: its frames as a JSON list, each
/// `{"headers": {name: string value}, "payload": JSON (sent as its text) or a string (sent as
/// it is), "corrupt": "message_crc" to flip the frame's last CRC byte}`), encoded by
/// aws-smithy-eventstream's own encoder, through the response translator, whole and in 7-byte
/// pieces (the same text).
fn golden_eventstream(direction: Direction, input: &[u8], echo: &ResponsesEcho) -> Vec<u8> {
    let frames: Vec<Value> = serde_json::from_slice(input).unwrap();
    let mut bytes = Vec::new();
    for f in &frames {
        let payload = match &f["payload"] {
            Value::String(s) => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            p => p.to_string().into_bytes(),
        };
        let mut frame = Frame::new(payload);
        for (name, value) in f["headers"].as_object().unwrap() {
            let value = HeaderValue::String(value.as_str().unwrap().to_string().into());
            frame = frame.add_header(Header::new(name.clone(), value));
        }
        let mut one = Vec::new();
        write_message_to(&frame, &mut one).unwrap();
        match f.get("corrupt").and_then(Value::as_str) {
            Some("message_crc") => *one.last_mut().unwrap() ^= 0xff,
            None => {}
            Some(other) => panic!("unknown corruption '{other}'"),
        }
        bytes.extend(one);
    }
    let translate = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let ct = EVENTSTREAM_CONTENT_TYPE;
        let mut t = ResponseTranslator::with_echo(direction, ct, context(200), echo.clone());
        assert!(!t.buffers());
        assert_eq!(t.output_content_type(), Some("text/event-stream"));
        assert_eq!(
            t.headers(),
            [
                (names::CONTENT_LENGTH, None),
                (names::CONTENT_TYPE, Some("text/event-stream".into()))
            ]
        );
        pieces.flat_map(|p| t.chunk(p)).collect::<Vec<u8>>()
    };
    let whole = translate(&mut std::iter::once(&bytes[..]));
    assert_eq!(translate(&mut bytes.chunks(7)), whole, "split into pieces");
    whole
}

/// One case's input file: its translation, and the extension of its expected file. `echo` is
/// what the Responses request of an answer case asked.
fn golden_case(
    direction: Direction,
    kind: &str,
    input: &[u8],
    echo: &ResponsesEcho,
) -> (Vec<u8>, &'static str) {
    let pretty = |v: &Value| {
        let mut out = serde_json::to_vec_pretty(v).unwrap();
        out.push(b'\n');
        out
    };
    match kind {
        "request.json" => (pretty(&golden_request(direction, input)), "json"),
        "response.json" => (
            pretty(&golden_json_answer(direction, 200, input, echo)),
            "json",
        ),
        "error.json" => {
            let v: Value = serde_json::from_slice(input).unwrap();
            let status = u32::try_from(v["status"].as_u64().unwrap()).unwrap();
            let body = match &v["body"] {
                Value::String(s) => s.clone().into_bytes(),
                b => b.to_string().into_bytes(),
            };
            (
                pretty(&golden_json_answer(direction, status, &body, echo)),
                "json",
            )
        }
        "stream.sse" => (golden_stream(direction, input, echo), "sse"),
        "eventstream.json" => (golden_eventstream(direction, input, echo), "sse"),
        other => panic!("unknown golden input kind '{other}'"),
    }
}

/// The echo of an answer case: its `<case>.echo.json` (the Responses request the answer is
/// for) as `translate_request` keeps it, or a request that set nothing.
fn golden_echo(dir: &Path, case: &str) -> ResponsesEcho {
    let Ok(request) = std::fs::read(dir.join(format!("{case}.echo.json"))) else {
        return ResponsesEcho::default();
    };
    let target = Target {
        model: GOLDEN_CHAT_MODEL,
        default_max_tokens: GOLDEN_DEFAULT_MAX_TOKENS,
    };
    responses_to_chat::translate_request(&request, &target)
        .unwrap_or_else(|e| panic!("{case}.echo.json: {}", e.message))
        .echo
        .unwrap()
}

/// A direction's cases: each expected file's name and its input file's. An answer case may
/// have a `<case>.echo.json` beside it.
fn golden_inputs(dir: &Path) -> BTreeMap<String, String> {
    let mut inputs = BTreeMap::new();
    let mut expected = Vec::new();
    let mut echoes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (case, kind) = name.split_once('.').unwrap();
        if kind.starts_with("expected.") {
            expected.push(name.clone());
        } else if kind == "echo.json" {
            echoes.push(case.to_string());
        } else if kind != "md" {
            let ext = if kind.ends_with(".sse") || kind == "eventstream.json" {
                "sse"
            } else {
                "json"
            };
            let out = format!("{case}.expected.{ext}");
            assert!(
                inputs.insert(out, name.clone()).is_none(),
                "{name}: the case name is taken"
            );
        }
    }
    for e in &expected {
        assert!(inputs.contains_key(e), "{e}: no input for it");
    }
    for case in &echoes {
        let answer = [
            "response.json",
            "error.json",
            "stream.sse",
            "eventstream.json",
        ]
        .iter()
        .any(|k| inputs.values().any(|n| *n == format!("{case}.{k}")));
        assert!(answer, "{case}.echo.json: no answer case for it");
    }
    inputs
}

/// Every case of one direction. `GOLDEN_BLESS=1` writes the expected files instead (then read
/// every change: it is a change of behaviour).
fn golden(direction: Direction) {
    let dir = golden_dir(direction);
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let inputs = golden_inputs(&dir);
    assert!(inputs.len() >= 20, "{}: too few cases", dir.display());
    for (out_name, name) in &inputs {
        let (case, kind) = name.split_once('.').unwrap();
        let echo = golden_echo(&dir, case);
        let input = std::fs::read(dir.join(name)).unwrap();
        let (out, ext) = golden_case(direction, kind, &input, &echo);
        let out_path = dir.join(out_name);
        if bless {
            std::fs::write(&out_path, &out).unwrap();
            continue;
        }
        let want = std::fs::read(&out_path)
            .unwrap_or_else(|e| panic!("{out_name}: {e} (GOLDEN_BLESS=1 writes it)"));
        if ext == "sse" {
            assert_eq!(sse_events(&out), sse_events(&want), "{name}");
        } else {
            assert_eq!(
                as_json(&out),
                as_json(&want),
                "{name}: got\n{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

#[test]
fn golden_openai_to_anthropic() {
    golden(Direction::OpenaiToAnthropic);
}

#[test]
fn golden_anthropic_to_openai() {
    golden(Direction::AnthropicToOpenai);
}

#[test]
fn golden_responses_to_chat() {
    golden(Direction::ResponsesToChat);
}

#[test]
fn golden_openai_to_bedrock() {
    golden(Direction::OpenaiToBedrock);
}

#[test]
fn golden_openai_to_gemini() {
    golden(Direction::OpenaiToGemini(
        openai_to_gemini::Dialect::GeminiApi,
    ));
}

/// Every answer of the Responses direction, as the translator makes it now, read by
/// openai-python's own types: each `response` by `Response.model_validate`, each stream event
/// by `ResponseStreamEvent`, and each stream through the SDK's `responses.stream` accumulator
/// (`tests/golden/validate_responses.py`).
#[test]
fn responses_answers_are_what_openai_python_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIPPED: {} is absent, so openai-python cannot check the Responses answers",
            python.display()
        );
        return;
    }
    let dir = golden_dir(Direction::ResponsesToChat);
    let out = tempfile::tempdir().unwrap();
    let mut answers = 0;
    for (out_name, name) in golden_inputs(&dir) {
        let (case, kind) = name.split_once('.').unwrap();
        if kind == "request.json" {
            continue;
        }
        let input = std::fs::read(dir.join(&name)).unwrap();
        let echo = golden_echo(&dir, case);
        let (answer, _) = golden_case(Direction::ResponsesToChat, kind, &input, &echo);
        std::fs::write(out.path().join(out_name), answer).unwrap();
        answers += 1;
    }
    assert!(answers >= 10, "too few answer cases: {answers}");
    let run = std::process::Command::new(&python)
        .arg(root.join("tests/golden/validate_responses.py"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "openai-python refused the answers:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
