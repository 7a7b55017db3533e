//! Runs the real binary over a real socket: the `listening on` line, HTTP/1.1
//! chunk framing of SSE events (OpenAI and Anthropic), a truncated stream, and exit on SIGTERM.

mod common;

use common::{chunks, Server};

const STREAM_BODY: &str = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}"#;

#[test]
fn serves_over_tcp_and_exits_on_sigterm() {
    let server = Server::start(&["--listen", "127.0.0.1:0"]);

    // Each SSE event is its own HTTP chunk, and the stream ends cleanly.
    let (raw, _) = server.raw(
        "POST /v1/chat/completions HTTP/1.1\r\nx-fake-completion-tokens: 4",
        STREAM_BODY,
    );
    let (head, events, complete) = chunks(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("x-fake-prompt-tokens: 8"), "{head}");
    assert!(complete);
    // role + 4 content + finish + usage + [DONE]
    assert_eq!(events.len(), 8, "{events:?}");
    for e in &events {
        assert!(e.starts_with("data: ") && e.ends_with("\n\n"), "{e:?}");
        assert_eq!(e.matches("data: ").count(), 1);
    }
    assert_eq!(events[7], "data: [DONE]\n\n");

    // A truncated stream: no [DONE], no terminating chunk.
    let (raw, _) = server.raw(
        "POST /v1/chat/completions HTTP/1.1\r\nx-fake-abort-after-events: 2",
        STREAM_BODY,
    );
    let (_, events, complete) = chunks(&raw);
    assert!(!complete, "stream must not finish cleanly");
    assert_eq!(events.len(), 2);
    assert!(!String::from_utf8_lossy(&raw).contains("[DONE]"));

    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn require_key_flag() {
    let server = Server::start(&["--require-key", "sk-secret-key-1234"]);
    let (raw, _) = server.raw("GET /v1/models HTTP/1.1", "");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains(r#""code":"invalid_api_key""#), "{text}");
    let (raw, _) = server.raw(
        "GET /v1/models HTTP/1.1\r\nAuthorization: Bearer sk-secret-key-1234",
        "",
    );
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert!(server.terminate().success());
}

const MESSAGES_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

#[test]
fn anthropic_messages_over_tcp() {
    let server = Server::start(&["--require-key", "sk-ant-key-1234"]);
    let (raw, _) = server.raw(
        "POST /v1/messages HTTP/1.1\r\nanthropic-version: 2023-06-01",
        MESSAGES_BODY,
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(
        text.contains(
            r#""error":{"type":"authentication_error","message":"x-api-key header is required"}"#
        ),
        "{text}"
    );

    // Each `event:` frame is its own HTTP chunk, and the stream ends cleanly.
    let auth = "x-api-key: sk-ant-key-1234\r\nanthropic-version: 2023-06-01";
    let (raw, _) = server.raw(
        &format!("POST /v1/messages HTTP/1.1\r\n{auth}\r\nx-fake-completion-tokens: 3"),
        MESSAGES_BODY,
    );
    let (head, events, complete) = chunks(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/event-stream; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("request-id: req_011C"), "{head}");
    assert!(complete);
    // message_start, content_block_start, ping, 3 deltas, content_block_stop,
    // message_delta, message_stop
    assert_eq!(events.len(), 9, "{events:?}");
    for e in &events {
        assert!(e.starts_with("event: ") && e.ends_with("\n\n"), "{e:?}");
        assert_eq!(e.matches("event: ").count(), 1);
        assert_eq!(e.matches("\ndata: ").count(), 1);
    }
    assert!(events[0].starts_with("event: message_start\ndata: {\"type\":\"message_start\""));
    assert_eq!(
        events[8],
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );

    // An in-band error after two events; the stream still ends cleanly.
    let (raw, _) = server.raw(
        &format!("POST /v1/messages HTTP/1.1\r\n{auth}\r\nx-fake-stream-error-after-events: 2"),
        MESSAGES_BODY,
    );
    let (_, events, complete) = chunks(&raw);
    assert!(complete);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2],
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    );
    assert!(server.terminate().success());
}
