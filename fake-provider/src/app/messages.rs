//! `POST /v1/messages`: Anthropic's Messages API, answered in its JSON and SSE formats; and
//! `POST /v1/messages/count_tokens`, answered `{"input_tokens": N}` with N the `input_tokens`
//! a message to the same body reports (without cache controls).
//!
//! Order of checks: `x-api-key` (with `--require-key`), `anthropic-version`, the control
//! headers, `x-fake-status`, then the body. The completion is the same deterministic text as
//! the OpenAI mode (`x-fake-completion-tokens` tokens, capped by `max_tokens`, cut at the first
//! `stop_sequences` match), or a `tool_use` block when a tool is to be called.
//!
//! Control headers: `x-fake-status` (an error in Anthropic's shape: 400
//! invalid_request_error, 401 authentication_error, 403 permission_error, 404
//! not_found_error, 429 rate_limit_error with `retry-after: 1`, 500 api_error, 529
//! overloaded_error, ...), `x-fake-delay-ms`, `x-fake-chunk-delay-ms`,
//! `x-fake-completion-tokens`, `x-fake-abort-after-events`, `x-fake-id` (message id; the tool
//! id is derived from it), `x-fake-cache-read-tokens`, `x-fake-cache-creation-tokens`,
//! `x-fake-tool-call: NAME` and `x-fake-stream-error-after-events: N` (after N events, an
//! `event: error` with an overloaded_error, then the stream ends cleanly; never after the
//! last event). `x-fake-no-usage`, `x-fake-cached-tokens` and `x-fake-reasoning-tokens` are
//! OpenAI-only and ignored here.
//!
//! Echo headers: those of the OpenAI mode, with `x-fake-received-api-key` the `x-api-key`
//! value, plus `x-fake-received-anthropic-version`; `request-id` (= `x-request-id`) is the
//! `request_id` of error bodies.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::generate::{self, Call};
use super::{json_response, Config, Controls};
use crate::anthropic::{
    self, CacheCreation, ContentBlock, Delta, DeltaUsage, Error, Message, MessageDeltaBody,
    MessagesRequest, StreamEvent, Usage,
};
use crate::api::ApiError;
use crate::sse;

/// `Content-Type` of a message stream, as Anthropic sends it.
const STREAM_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";
/// Largest `partial_json` piece of a streamed tool input.
const JSON_PIECE_BYTES: usize = 12;

/// A request id in Anthropic's form (`req_011C...`), sent as `request-id` and in error bodies.
pub(super) fn request_id() -> String {
    format!("req_011C{}", generate::alphanumeric(20))
}

fn check_auth(config: &Config, headers: &HeaderMap) -> Result<(), Error> {
    let Some(key) = &config.require_key else {
        return Ok(());
    };
    let unauthorized = |m: &str| Error::new(StatusCode::UNAUTHORIZED, "authentication_error", m);
    match headers.get("x-api-key").map(|v| v.as_bytes()) {
        None => Err(unauthorized("x-api-key header is required")),
        Some(k) if k == key.as_bytes() => Ok(()),
        Some(_) => Err(unauthorized("invalid x-api-key")),
    }
}

pub(super) fn error_response(err: &Error, request_id: &str) -> Response {
    let mut resp = json_response(err.status, &err.body(Some(request_id)));
    if err.status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// `{"input_tokens": N}` of `/v1/messages/count_tokens`.
#[derive(serde::Serialize)]
struct TokenCount {
    input_tokens: u64,
}

/// The answer to a `/v1/messages` request (`parsed` is the body's parse; `count_only` for
/// `/v1/messages/count_tokens`), with `request-id`.
pub(super) fn respond(
    config: &Config,
    headers: &HeaderMap,
    controls: Result<Controls, ApiError>,
    parsed: Result<MessagesRequest, Error>,
    count_only: bool,
    request_id: &str,
) -> Response {
    let result = (|| {
        check_auth(config, headers)?;
        if headers
            .get("anthropic-version")
            .is_none_or(|v| v.as_bytes().trim_ascii().is_empty())
        {
            return Err(Error::invalid("anthropic-version: header is required"));
        }
        let ctl = controls.map_err(|e| Error::invalid(e.message))?;
        if let Some(status) = ctl
            .status
            .filter(|s| s.is_client_error() || s.is_server_error())
        {
            return Err(Error::simulated(status));
        }
        let req = parsed?;
        if count_only {
            let count = TokenCount {
                input_tokens: req.prompt_tokens,
            };
            return Ok(json_response(StatusCode::OK, &count));
        }
        message(&req, &ctl, "msg_01")
    })();
    let mut response = result.unwrap_or_else(|e| error_response(&e, request_id));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

/// A tool call: an id, the tool and an input matching its schema.
struct ToolCall<'a> {
    id: String,
    name: &'a str,
    input: Value,
    json: String,
    output_tokens: u64,
}

/// The tool to call (see [`generate::tool_call`]) and its id.
fn tool_call<'a>(req: &'a MessagesRequest, ctl: &Controls) -> Result<Option<ToolCall<'a>>, Error> {
    let call = generate::tool_call(&req.tools, &req.tool_choice, req.answers_tool_results, ctl)
        .map_err(Error::invalid)?;
    Ok(call.map(|c: Call<'a>| ToolCall {
        id: format!("toolu_01{}", generate::fixed_or_random(ctl, 22)),
        name: c.name,
        input: c.input,
        json: c.json,
        output_tokens: c.output_tokens,
    }))
}

/// The message answering `req` (JSON, or its SSE events with `stream`), with an id of
/// `id_prefix` and 22 random characters (or `x-fake-id`).
pub(super) fn message(
    req: &MessagesRequest,
    ctl: &Controls,
    id_prefix: &str,
) -> Result<Response, Error> {
    let id = match &ctl.fixed_id {
        Some(id) => id.clone(),
        None => format!("{id_prefix}{}", generate::alphanumeric(22)),
    };
    let tool = tool_call(req, ctl)?;
    let text = match tool {
        Some(_) => None,
        None => Some(generate::text(
            0,
            ctl.completion_tokens,
            Some(req.max_tokens),
            &req.stop_sequences,
        )),
    };
    let (stop_reason, stop_sequence, output_tokens) = match (&tool, &text) {
        (Some(call), _) => ("tool_use", None, call.output_tokens),
        (None, Some(t)) => (t.stop_reason, t.stop_sequence.as_deref(), t.output_tokens),
        (None, None) => unreachable!(),
    };
    let block = || match (&tool, &text) {
        (Some(call), _) => ContentBlock::ToolUse {
            id: &call.id,
            name: call.name,
            input: &call.input,
        },
        (None, Some(t)) => ContentBlock::Text { text: &t.text },
        (None, None) => unreachable!(),
    };
    // input_tokens counts only what was neither read from nor written to the cache, as in the
    // real API: the three fields add up to the prompt.
    let cache_read = ctl.cache_read_tokens;
    let cache_creation = ctl.cache_creation_tokens;
    let input_tokens = req
        .prompt_tokens
        .saturating_sub(cache_read.saturating_add(cache_creation));
    let usage = |output_tokens| Usage {
        input_tokens,
        cache_creation_input_tokens: cache_creation,
        cache_read_input_tokens: cache_read,
        cache_creation: CacheCreation {
            ephemeral_5m_input_tokens: cache_creation,
            ephemeral_1h_input_tokens: 0,
        },
        output_tokens,
        service_tier: anthropic::SERVICE_TIER,
    };
    let message = |content, stop_reason, stop_sequence, output_tokens| Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &req.model,
        content,
        stop_reason,
        stop_sequence,
        usage: usage(output_tokens),
    };
    if !req.stream {
        let body = message(
            vec![block()],
            Some(stop_reason),
            stop_sequence,
            output_tokens,
        );
        return Ok(json_response(StatusCode::OK, &body));
    }
    let empty_input = Value::Object(Default::default());
    let start_block = match &tool {
        Some(call) => ContentBlock::ToolUse {
            id: &call.id,
            name: call.name,
            input: &empty_input,
        },
        None => ContentBlock::Text { text: "" },
    };
    let delta = |delta| StreamEvent::ContentBlockDelta { index: 0, delta };
    let mut events = vec![
        StreamEvent::MessageStart {
            message: message(vec![], None, None, 1),
        },
        StreamEvent::ContentBlockStart {
            index: 0,
            content_block: start_block,
        },
        StreamEvent::Ping,
    ];
    match (&tool, &text) {
        (Some(call), _) => {
            events.push(delta(Delta::InputJsonDelta { partial_json: "" }));
            for piece in anthropic::json_pieces(&call.json, JSON_PIECE_BYTES) {
                events.push(delta(Delta::InputJsonDelta {
                    partial_json: piece,
                }));
            }
        }
        (None, Some(t)) => {
            for piece in &t.pieces {
                events.push(delta(Delta::TextDelta { text: piece }));
            }
        }
        (None, None) => unreachable!(),
    }
    events.push(StreamEvent::ContentBlockStop { index: 0 });
    events.push(StreamEvent::MessageDelta {
        delta: MessageDeltaBody {
            stop_reason,
            stop_sequence,
        },
        usage: DeltaUsage {
            input_tokens,
            cache_creation_input_tokens: cache_creation,
            cache_read_input_tokens: cache_read,
            output_tokens,
        },
    });
    events.push(StreamEvent::MessageStop);
    let frames = events.iter().map(StreamEvent::frame).collect();
    let error_after = ctl
        .stream_error_after_events
        .map(|n| (n, vec![anthropic::error_frame(&Error::overloaded())]));
    Ok(sse::frames_response(
        frames,
        STREAM_CONTENT_TYPE,
        ctl.pace(),
        ctl.abort_after_events,
        error_after,
    ))
}
