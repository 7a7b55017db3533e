//! AWS Bedrock's Converse API: `POST /model/{modelId}/converse` (JSON) and
//! `/converse-stream` (`application/vnd.amazon.eventstream` frames).
//!
//! Order of checks: the credentials (a SigV4 signature, verified by recomputing it with
//! `aws-sigv4`, or a Bedrock API key as `Authorization: Bearer`), the control headers, the
//! model id, `x-fake-status` / `x-fake-error-type`, then the body. Every answer has
//! `x-amzn-RequestId` (also `x-request-id`).
//!
//! The answer is the fake's usual text (`x-fake-completion-tokens` one-token words, capped by
//! `inferenceConfig.maxTokens`: `stopReason: max_tokens`; cut at a stop sequence:
//! `stop_sequence`), or a `toolUse` (`x-fake-tool-call: NAME`, or `toolChoice` `any`/`tool`;
//! when the last message hands back toolResults, `x-fake-tool-call` answers text), with
//! `usage` (`inputTokens` without the cache tokens, `cacheReadInputTokens` /
//! `cacheWriteInputTokens` from `x-fake-cache-read-tokens` / `x-fake-cache-creation-tokens`
//! when set, `totalTokens` the sum of all four) and `metrics.latencyMs`.
//!
//! The stream: `messageStart`, for a tool `contentBlockStart` with the toolUse id and name,
//! `contentBlockDelta`s (text pieces, or pieces of the tool input JSON), `contentBlockStop`,
//! `messageStop` with the stop reason, `metadata` with the usage and metrics; each payload also
//! has Bedrock's `p` padding field. `x-fake-stream-error-after-events: N` sends N frames and
//! an exception frame (`x-fake-error-type`'s exception, else `serviceUnavailableException`),
//! then ends cleanly; `x-fake-abort-after-events: N` cuts the stream after N frames.
//!
//! Errors: `x-fake-status` answers the exception Bedrock uses for that status (400
//! ValidationException, 403 AccessDeniedException, 404 ResourceNotFoundException, 408
//! ModelTimeoutException, 424 ModelErrorException, 429 ThrottlingException, 500
//! InternalServerException, 503 ServiceUnavailableException); `x-fake-error-type: NAME` answers
//! that exception with its status (`ModelNotReadyException` is a 429).
//!
//! Echo headers: `x-fake-aws-auth` (`sigv4` or `api-key`) and, for SigV4,
//! `x-fake-received-signed-headers`.

use std::time::SystemTime;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{latency_ms, set, uuid, Answer, Exchange};
use crate::app::generate::{self, Call, Text};
use crate::app::{json_response, Config, Controls};
use crate::bedrock::{self, ConverseRequest, Error};
use crate::{anthropic, eventstream, sigv4, sse};

/// Largest piece of a streamed tool input.
const JSON_PIECE_BYTES: usize = 12;
/// Bedrock pads every stream payload with a `p` field of letters, so that the sizes of the
/// frames do not tell the text; the fake uses this alphabet's prefixes.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0";

/// How the request authenticated.
enum Auth {
    SigV4(String),
    ApiKey,
}

fn authenticate(config: &Config, x: &Exchange<'_>) -> Result<Auth, Error> {
    let bearer = x
        .received
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    if let Some(key) = bearer {
        return match &config.clouds.bedrock_api_key {
            Some(expected) if expected == key => Ok(Auth::ApiKey),
            _ => {
                let mut err = Error::new(
                    403,
                    "AccessDeniedException",
                    "Authentication failed: Please make sure your API Key is valid.",
                );
                err.message_key = "Message";
                Err(err)
            }
        };
    }
    sigv4::verify(
        &config.clouds.aws,
        x.method,
        x.uri,
        x.received,
        x.body,
        SystemTime::now(),
    )
    .map(|v| Auth::SigV4(v.signed_headers))
    .map_err(|r| Error::new(r.status, r.code, r.message))
}

pub(super) fn respond(config: &Config, x: &Exchange<'_>, stream: bool, model_id: &str) -> Answer {
    let request_id = uuid();
    let mut echo = Vec::new();
    let mut prompt_tokens = 0;
    let result = (|| {
        let auth = authenticate(config, x)?;
        match &auth {
            Auth::SigV4(signed) => {
                echo.push(("x-fake-aws-auth", HeaderValue::from_static("sigv4")));
                if let Ok(v) = HeaderValue::from_str(signed) {
                    echo.push(("x-fake-received-signed-headers", v));
                }
            }
            Auth::ApiKey => echo.push(("x-fake-aws-auth", HeaderValue::from_static("api-key"))),
        }
        let ctl = x
            .controls
            .clone()
            .map_err(|e| Error::validation(e.message))?;
        bedrock::check_model_id(model_id)?;
        // With `x-fake-stream-error-after-events`, a stream's exception comes in-band.
        let in_band = stream && ctl.stream_error_after_events.is_some();
        if let Some(name) = x.header("x-fake-error-type").filter(|_| !in_band) {
            return Err(Error::named(name.trim()));
        }
        if let Some(status) = ctl
            .status
            .filter(|s| s.is_client_error() || s.is_server_error())
        {
            return Err(Error::simulated(status));
        }
        let req = bedrock::parse_converse(x.body)?;
        prompt_tokens = req.prompt_tokens;
        converse(&req, &ctl, x, stream)
    })();
    let mut response = result.unwrap_or_else(|e| e.response(&request_id));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    Answer {
        response,
        prompt_tokens,
        model: model_id.to_owned(),
        echo,
        request_id,
        anthropic: false,
    }
}

/// What the model says: text, or a tool call with its id.
enum Said<'a> {
    Text(Text),
    Tool(String, Call<'a>),
}

/// `usage`: input tokens without those read from or written to the cache, as Bedrock counts.
fn usage(req: &ConverseRequest, ctl: &Controls, output_tokens: u64) -> Value {
    let (read, write) = (ctl.cache_read_tokens, ctl.cache_creation_tokens);
    let input = req.prompt_tokens.saturating_sub(read.saturating_add(write));
    let mut usage = json!({
        "inputTokens": input,
        "outputTokens": output_tokens,
        "totalTokens": input + output_tokens + read + write,
    });
    if read > 0 {
        set(&mut usage, "cacheReadInputTokens", json!(read));
    }
    if write > 0 {
        set(&mut usage, "cacheWriteInputTokens", json!(write));
    }
    usage
}

fn converse(
    req: &ConverseRequest,
    ctl: &Controls,
    x: &Exchange<'_>,
    stream: bool,
) -> Result<Response, Error> {
    let call = generate::tool_call(&req.tools, &req.tool_choice, req.answers_tool_results, ctl)
        .map_err(Error::validation)?;
    let said = match call {
        Some(call) => Said::Tool(
            format!("tooluse_{}", generate::fixed_or_random(ctl, 22)),
            call,
        ),
        None => Said::Text(generate::text(
            0,
            ctl.completion_tokens,
            req.max_tokens,
            &req.stop_sequences,
        )),
    };
    let (stop_reason, output_tokens) = match &said {
        Said::Tool(_, call) => ("tool_use", call.output_tokens),
        Said::Text(t) => (t.stop_reason, t.output_tokens),
    };
    if !stream {
        let block = match &said {
            Said::Tool(id, call) => {
                json!({"toolUse": {"toolUseId": id, "name": call.name, "input": call.input}})
            }
            Said::Text(t) => json!({"text": t.text}),
        };
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": stop_reason,
            "usage": usage(req, ctl, output_tokens),
            "metrics": {"latencyMs": latency_ms(ctl, 0)},
        });
        return Ok(json_response(StatusCode::OK, &body));
    }
    let mut events: Vec<(&str, Value)> = vec![("messageStart", json!({"role": "assistant"}))];
    let delta = |delta: Value| {
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": delta}),
        )
    };
    match &said {
        Said::Tool(id, call) => {
            events.push(("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": id, "name": call.name}}})));
            for piece in anthropic::json_pieces(&call.json, JSON_PIECE_BYTES) {
                events.push(delta(json!({"toolUse": {"input": piece}})));
            }
        }
        Said::Text(t) => {
            for piece in &t.pieces {
                events.push(delta(json!({"text": piece})));
            }
        }
    }
    events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
    events.push(("messageStop", json!({"stopReason": stop_reason})));
    let latency = latency_ms(ctl, events.len() + 1);
    events.push((
        "metadata",
        json!({"usage": usage(req, ctl, output_tokens), "metrics": {"latencyMs": latency}}),
    ));
    let frames = events
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut payload))| {
            set(
                &mut payload,
                "p",
                json!(PADDING.get(..1 + (i * 7) % PADDING.len()).unwrap_or("a")),
            );
            eventstream::event(name, &payload)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::named("InternalServerException").with_message(e))?;
    let error_after = match ctl.stream_error_after_events {
        Some(n) => {
            let err = match x.header("x-fake-error-type") {
                Some(name) => Error::named(name.trim()),
                None => Error::named("ServiceUnavailableException"),
            };
            let frame = eventstream::exception(&err.stream_member(), &err.message)
                .map_err(|e| Error::named("InternalServerException").with_message(e))?;
            Some((n, vec![frame]))
        }
        None => None,
    };
    Ok(sse::frames_response(
        frames,
        eventstream::CONTENT_TYPE,
        ctl.pace(),
        ctl.abort_after_events,
        error_after,
    ))
}
