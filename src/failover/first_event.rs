//! The first-event check of a failover attempt: its answer is held until it shows whether the
//! provider is really answering.
//!
//! Envoy retries on what it sees in the response headers, but a provider can answer `200` and
//! then fail in-band (OpenAI's `data: {"error": ...}`, Anthropic's `event: error` with an
//! `overloaded_error`, a Responses `error` or `response.failed`), or say nothing at all. So for
//! every attempt but the last, the upstream filter holds the headers and what follows until
//! the first event that carries output: an in-band error first turns the attempt into a 503,
//! which the route's retry policy retries on the next provider, and nothing of it reaches the
//! client; a stall keeps the headers from the router, so the route's per-try timeout (for a
//! stream the gateway sets it to the chain's `first_event_timeout_ms`) ends the attempt the
//! same way. A JSON answer is held whole: a `200` whose body is an error object fails over too.
//!
//! The check reads what the upstream filter emits, which is OpenAI's format whatever the
//! provider spoke (its translators turn Anthropic, Bedrock and Gemini errors into OpenAI's),
//! and also knows Anthropic's and the Responses API's own events.

use serde_json::Value;

use crate::sse;
use crate::translate::{media_type, SSE_CONTENT_TYPE};

/// How much of a stream is held at most before it is let through unjudged (no provider sends
/// this much before its first output).
pub const MAX_HELD_STREAM: usize = 256 * 1024;
/// How much of a JSON answer is held at most.
pub const MAX_HELD_JSON: usize = 8 * 1024 * 1024;

/// What the held answer shows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing decisive yet: keep holding.
    Wait,
    /// The provider is answering: let it all through.
    Release,
    /// An error inside a `200`: fail the attempt over.
    Fail,
}

/// What one event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Opens the answer without output yet (`message_start`, `response.created`, a chat chunk
    /// with only the role, a `ping`).
    Preamble,
    Output,
    Error,
}

/// One attempt's held answer.
#[derive(Debug)]
pub struct FirstEvent {
    /// For a stream; `None` for a JSON answer, judged whole.
    parser: Option<sse::Parser>,
    held: Vec<u8>,
}

impl FirstEvent {
    /// The check for an answer of this (emitted) content type.
    pub fn new(content_type: &str) -> FirstEvent {
        let stream = media_type(content_type).eq_ignore_ascii_case(SSE_CONTENT_TYPE);
        FirstEvent {
            parser: stream.then(|| sse::Parser::new(MAX_HELD_STREAM)),
            held: Vec::new(),
        }
    }

    /// Hold the next piece of the answer; `end` when it is the last.
    pub fn feed(&mut self, piece: &[u8], end: bool) -> Verdict {
        self.held.extend_from_slice(piece);
        let verdict = match self.parser.as_mut() {
            Some(parser) => {
                let mut verdict = Verdict::Wait;
                parser.feed(piece, |_, e| {
                    if verdict == Verdict::Wait {
                        verdict = match kind(e.name, e.data) {
                            Kind::Preamble => Verdict::Wait,
                            Kind::Output => Verdict::Release,
                            Kind::Error => Verdict::Fail,
                        };
                    }
                });
                if verdict == Verdict::Wait && self.held.len() > MAX_HELD_STREAM {
                    Verdict::Release
                } else {
                    verdict
                }
            }
            None if end => {
                if is_error_body(&self.held) {
                    Verdict::Fail
                } else {
                    Verdict::Release
                }
            }
            None if self.held.len() > MAX_HELD_JSON => Verdict::Release,
            None => Verdict::Wait,
        };
        match verdict {
            Verdict::Wait if end => Verdict::Release,
            v => v,
        }
    }

    /// What was held, to let through.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// What the event `name` with `data` says.
fn kind(name: &[u8], data: &[u8]) -> Kind {
    if name == b"error" {
        return Kind::Error;
    }
    if data.trim_ascii() == b"[DONE]" {
        return Kind::Output;
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Kind::Output;
    };
    if is_error(&v) {
        return Kind::Error;
    }
    match v.get("type").and_then(Value::as_str) {
        Some(
            "message_start"
            | "ping"
            | "response.created"
            | "response.in_progress"
            | "response.queued",
        ) => return Kind::Preamble,
        Some("response.failed") => return Kind::Error,
        _ => {}
    }
    let role_only = v.get("object").and_then(Value::as_str) == Some("chat.completion.chunk")
        && v.get("usage").is_none_or(Value::is_null)
        && v.get("choices")
            .and_then(Value::as_array)
            .is_some_and(|choices| choices.iter().all(says_nothing));
    if role_only {
        Kind::Preamble
    } else {
        Kind::Output
    }
}

/// A chat chunk's choice that carries no output and no finish.
fn says_nothing(choice: &Value) -> bool {
    let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
    let delta = choice.get("delta");
    let carries = |field: &str| {
        delta.and_then(|d| d.get(field)).is_some_and(|x| match x {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        })
    };
    !finished
        && ![
            "content",
            "refusal",
            "tool_calls",
            "function_call",
            "reasoning_content",
        ]
        .into_iter()
        .any(carries)
}

/// An OpenAI (`{"error": {...}}`) or Anthropic (`{"type": "error", ...}`) error object.
fn is_error(v: &Value) -> bool {
    v.get("error").is_some_and(Value::is_object)
        || v.get("type").and_then(Value::as_str) == Some("error")
}

/// Whether a whole JSON answer is an error object.
fn is_error_body(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| is_error(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ct: &str, pieces: &[&str]) -> Vec<Verdict> {
        let mut f = FirstEvent::new(ct);
        let last = pieces.len().saturating_sub(1);
        pieces
            .iter()
            .enumerate()
            .map(|(i, p)| f.feed(p.as_bytes(), i == last))
            .collect()
    }

    const SSE: &str = "text/event-stream; charset=utf-8";

    #[test]
    fn a_chat_stream_is_released_at_its_first_content_and_not_before() {
        let role = r#"data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        let text = r#"data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(
            run(
                SSE,
                &[
                    &format!("{role}\n\n"),
                    &text[..20],
                    &format!("{}\n\n", &text[20..]),
                    "data: [DONE]\n\n"
                ]
            ),
            [
                Verdict::Wait,
                Verdict::Wait,
                Verdict::Release,
                Verdict::Release
            ]
        );
    }

    #[test]
    fn in_band_errors_of_each_api_fail_the_attempt() {
        for first in [
            "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\"}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\"}\n\n",
        ] {
            assert_eq!(run(SSE, &[first]), [Verdict::Fail], "{first}");
        }
        // After the preamble of each API.
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n";
        let responses = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"error\":null}}\n\nevent: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"response\":{}}\n\n";
        for preamble in [anthropic, responses] {
            assert_eq!(
                run(
                    SSE,
                    &[preamble, "event: error\ndata: {\"type\":\"error\"}\n\n"]
                ),
                [Verdict::Wait, Verdict::Fail]
            );
        }
    }

    #[test]
    fn output_of_each_api_releases() {
        for first in [
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\"}\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
            "data: not json\n\n",
        ] {
            assert_eq!(run(SSE, &[first]), [Verdict::Release], "{first}");
        }
    }

    #[test]
    fn a_json_answer_is_judged_whole() {
        let error =
            r#"{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}"#;
        assert_eq!(
            run("application/json", &[&error[..10], &error[10..]]),
            [Verdict::Wait, Verdict::Fail]
        );
        assert_eq!(
            run(
                "application/json",
                &[r#"{"type":"error","error":{"type":"overloaded_error"}}"#]
            ),
            [Verdict::Fail]
        );
        // A completion that mentions an error is an answer.
        let ok = r#"{"object":"chat.completion","choices":[{"message":{"content":"error"}}],"error":null}"#;
        assert_eq!(run("application/json", &[ok]), [Verdict::Release]);
    }

    #[test]
    fn a_stream_that_ends_or_grows_without_output_is_let_through() {
        assert_eq!(
            run(SSE, &["event: ping\ndata: {\"type\":\"ping\"}\n\n"]),
            [Verdict::Release]
        );
        let mut f = FirstEvent::new(SSE);
        let ping = "event: ping\ndata: {\"type\":\"ping\"}\n\n".repeat(MAX_HELD_STREAM / 30 + 1);
        assert_eq!(f.feed(ping.as_bytes(), false), Verdict::Release);
        assert_eq!(f.take().len(), ping.len());
    }
}
