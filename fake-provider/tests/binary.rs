//! Runs the real binary over a real socket: the `listening on` line, HTTP/1.1
//! chunk framing of SSE events (OpenAI and Anthropic), a truncated stream, and exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fake-provider");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end()
            .to_owned();
        assert!(line.ends_with('\n'));
        Server { child, addr }
    }

    /// Sends one HTTP/1.1 request and returns the raw response bytes (and
    /// whether reading ended in an error such as a reset).
    fn raw(&self, head: &str, body: &str) -> (Vec<u8>, bool) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{head}\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = Vec::new();
        let failed = s.read_to_end(&mut out).is_err();
        (out, failed)
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("fake-provider did not exit within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits a response into its head and its HTTP/1.1 chunks; `complete`
/// tells whether the terminating zero-size chunk was seen.
fn chunks(raw: &[u8]) -> (String, Vec<String>, bool) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("response head");
    assert!(head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    let mut out = Vec::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (head.to_owned(), out, false);
        };
        let size = usize::from_str_radix(size, 16).expect("chunk size");
        if size == 0 {
            return (head.to_owned(), out, after == "\r\n");
        }
        if after.len() < size + 2 {
            return (head.to_owned(), out, false);
        }
        out.push(after[..size].to_owned());
        rest = &after[size + 2..];
    }
}

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
