//! The Responses API of the real binary over a real socket: every SSE event in its own HTTP
//! chunk, a cut stream, and the official openai (and anthropic) Python SDK against it, with
//! every body and event validated with the SDK's types (tests/responses_sdk.py).

mod common;

use std::path::Path;
use std::process::Command;

use common::{chunks, Server};

const BODY: &str = r#"{"model":"gpt-4o","input":"Hello","stream":true}"#;

#[test]
fn events_are_chunks_and_an_abort_cuts_the_stream() {
    let server = Server::start(&[]);
    let (raw, _) = server.raw(
        "POST /v1/responses HTTP/1.1\r\nx-fake-completion-tokens: 2",
        BODY,
    );
    let (head, events, complete) = chunks(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/event-stream; charset=utf-8"),
        "{head}"
    );
    assert!(complete);
    // created, in_progress, item added, part added, 2 deltas, text done, part done, item
    // done, completed
    assert_eq!(events.len(), 10, "{events:?}");
    for (i, e) in events.iter().enumerate() {
        assert!(
            e.starts_with("event: response.") && e.ends_with("\n\n"),
            "{e:?}"
        );
        assert_eq!(e.matches("\ndata: ").count(), 1, "{e:?}");
        assert!(e.contains(&format!(r#","sequence_number":{i},"#)), "{e:?}");
    }
    assert!(events[9].starts_with("event: response.completed\n"));

    let (raw, _) = server.raw(
        "POST /v1/responses HTTP/1.1\r\nx-fake-abort-after-events: 3",
        BODY,
    );
    let (_, events, complete) = chunks(&raw);
    assert!(!complete, "stream must not finish cleanly");
    assert_eq!(events.len(), 3);
    assert!(server.terminate().success());
}

#[test]
fn the_openai_sdk_reads_every_shape() {
    let server = Server::start(&[]);
    let python = std::env::var("SDK_PYTHON").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        venv.to_string_lossy().into_owned()
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/responses_sdk.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .output()
        .unwrap_or_else(|e| panic!("run {python} (make sdk installs the SDKs): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("responses sdk ok"), "{text}");
    assert!(server.terminate().success());
}
