//! The HTTP application: routing by path suffix, auth, control headers, echo
//! headers and the OpenAI endpoints (the Anthropic Messages API is in [`messages`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{self, ApiError, ChatUsage, EmbeddingsRequest, GenerationRequest, TextUsage};
use crate::{anthropic, embed, sse, tokens};

mod messages;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Default number of completion tokens.
pub const DEFAULT_COMPLETION_TOKENS: u64 = 16;
/// Upper bound for `x-fake-completion-tokens`, to keep responses bounded.
const MAX_COMPLETION_TOKENS: u64 = 1_000_000;

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// When set, requests must carry `Authorization: Bearer KEY` or `api-key: KEY`.
    pub require_key: Option<String>,
    /// Log one line per request to stderr.
    pub verbose: bool,
    /// Control headers every request behaves as if it carried (they win over the request's
    /// own): one instance can play a provider that is down (`x-fake-status: 503`) or slow.
    pub forced_headers: HeaderMap,
}

pub fn router(config: Config) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Anthropic's `POST /v1/messages`.
    Messages,
    Chat,
    Completions,
    Embeddings,
    Models,
}

/// Matches the path's suffix, so any prefix (`/v1`, `/openai/v1`, ...) works.
fn route(method: &Method, path: &str) -> Option<Endpoint> {
    let path = path.trim_end_matches('/');
    let endpoint = if path.ends_with("/v1/messages") {
        Endpoint::Messages
    } else if path.ends_with("/chat/completions") {
        Endpoint::Chat
    } else if path.ends_with("/completions") {
        Endpoint::Completions
    } else if path.ends_with("/embeddings") {
        Endpoint::Embeddings
    } else if path.ends_with("/models") {
        Endpoint::Models
    } else {
        return None;
    };
    let expected = match endpoint {
        Endpoint::Models => Method::GET,
        _ => Method::POST,
    };
    (method == expected).then_some(endpoint)
}

/// The `x-fake-*` control headers.
#[derive(Debug, Clone, PartialEq)]
struct Controls {
    status: Option<StatusCode>,
    delay: Duration,
    chunk_delay: Duration,
    completion_tokens: u64,
    no_usage: bool,
    cached_tokens: u64,
    reasoning_tokens: u64,
    abort_after_events: Option<usize>,
    /// `x-fake-id`: a fixed response id (and a fixed `created`), so two responses to the same
    /// request are byte-for-byte identical.
    fixed_id: Option<String>,
    /// `x-fake-cache-read-tokens` (Anthropic's `cache_read_input_tokens`).
    cache_read_tokens: u64,
    /// `x-fake-cache-creation-tokens` (Anthropic's `cache_creation_input_tokens`).
    cache_creation_tokens: u64,
    /// `x-fake-tool-call`: the name of the tool to call, when the request has `tools` (chat
    /// completions: a `tool_calls` message with arguments [`TOOL_ARGUMENTS`] and finish reason
    /// `tool_calls`; Anthropic mode: a `tool_use` block).
    tool_call: Option<String>,
    /// `x-fake-stream-error-after-events`: an in-band error after this many events, then a
    /// clean end without the last event (Anthropic mode: `event: error` with an
    /// overloaded_error; chat completions: `data: {"error": ...}` with a server_error).
    stream_error_after_events: Option<usize>,
}

/// The `created` timestamp used with `x-fake-id`.
const FIXED_CREATED: u64 = 1_700_000_000;

impl Controls {
    /// The response id and `created` for a new response.
    fn id_and_created(&self, prefix: &str) -> (String, u64) {
        match &self.fixed_id {
            Some(id) => (id.clone(), FIXED_CREATED),
            None => (random_id(prefix), now()),
        }
    }

    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        fn num(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
            let Some(v) = headers.get(name) else {
                return Ok(None);
            };
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "fake-provider: header {name} must be a non-negative integer"
                    ))
                })
        }
        let status = match num(headers, "x-fake-status")? {
            None => None,
            Some(s) => Some(
                u16::try_from(s)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .ok_or_else(|| {
                        ApiError::invalid("fake-provider: x-fake-status is not a status code")
                    })?,
            ),
        };
        let no_usage = match headers.get("x-fake-no-usage").map(|v| v.as_bytes()) {
            None | Some(b"0") | Some(b"false") => false,
            Some(_) => true,
        };
        Ok(Controls {
            status,
            delay: Duration::from_millis(num(headers, "x-fake-delay-ms")?.unwrap_or(0)),
            chunk_delay: Duration::from_millis(num(headers, "x-fake-chunk-delay-ms")?.unwrap_or(0)),
            completion_tokens: num(headers, "x-fake-completion-tokens")?
                .unwrap_or(DEFAULT_COMPLETION_TOKENS)
                .min(MAX_COMPLETION_TOKENS),
            no_usage,
            cached_tokens: num(headers, "x-fake-cached-tokens")?.unwrap_or(0),
            reasoning_tokens: num(headers, "x-fake-reasoning-tokens")?.unwrap_or(0),
            abort_after_events: num(headers, "x-fake-abort-after-events")?.map(|n| n as usize),
            fixed_id: headers
                .get("x-fake-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            cache_read_tokens: num(headers, "x-fake-cache-read-tokens")?.unwrap_or(0),
            cache_creation_tokens: num(headers, "x-fake-cache-creation-tokens")?.unwrap_or(0),
            tool_call: headers
                .get("x-fake-tool-call")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string()),
            stream_error_after_events: num(headers, "x-fake-stream-error-after-events")?
                .map(|n| n as usize),
        })
    }
}

/// A request parsed for its endpoint.
enum Parsed {
    /// Anthropic errors have their own shape, so they travel inside.
    Messages(Result<anthropic::MessagesRequest, anthropic::Error>),
    Chat(GenerationRequest),
    Completion(GenerationRequest),
    Embeddings(EmbeddingsRequest),
    Models,
}

impl Parsed {
    fn prompt_tokens(&self) -> u64 {
        match self {
            Parsed::Messages(r) => r.as_ref().map_or(0, |r| r.prompt_tokens),
            Parsed::Chat(r) | Parsed::Completion(r) => r.prompt_tokens,
            Parsed::Embeddings(r) => r.prompt_tokens,
            Parsed::Models => 0,
        }
    }
}

fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Parsed, ApiError> {
    match endpoint {
        Endpoint::Models => return Ok(Parsed::Models),
        Endpoint::Messages => return Ok(Parsed::Messages(anthropic::parse_messages(body))),
        _ => {}
    }
    let obj = api::parse_object(body)?;
    Ok(match endpoint {
        Endpoint::Chat => Parsed::Chat(api::parse_chat(&obj)?),
        Endpoint::Completions => Parsed::Completion(api::parse_completion(&obj)?),
        Endpoint::Embeddings => Parsed::Embeddings(api::parse_embeddings(&obj)?),
        Endpoint::Models | Endpoint::Messages => unreachable!(),
    })
}

/// What reached the provider, echoed on every response. For the Anthropic endpoint
/// (`anthropic`), `x-fake-received-api-key` is the `x-api-key` header and
/// `x-fake-received-anthropic-version` is added.
fn echo_headers(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    prompt_tokens: u64,
    anthropic: bool,
) -> Vec<(&'static str, HeaderValue)> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let model = json
        .as_ref()
        .and_then(|j| j.get("model"))
        .and_then(|m| m.as_str())
        .unwrap_or("");
    let include_usage = json
        .as_ref()
        .and_then(|j| j.pointer("/stream_options/include_usage"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut received: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        received
            .entry(name.as_str())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let received = serde_json::to_vec(&received).expect("map of strings");
    let copy = |name: &str| {
        headers
            .get(name)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(""))
    };
    let text = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut echo = vec![
        ("x-fake-received-model", text(model)),
        ("x-fake-received-path", text(path)),
        ("x-fake-received-authorization", copy("authorization")),
        (
            "x-fake-received-api-key",
            copy(if anthropic { "x-api-key" } else { "api-key" }),
        ),
        (
            "x-fake-received-include-usage",
            HeaderValue::from_static(if include_usage { "true" } else { "false" }),
        ),
        (
            "x-fake-received-body-sha256",
            text(&hex::encode(Sha256::digest(body))),
        ),
        (
            "x-fake-received-headers",
            text(&base64::engine::general_purpose::STANDARD.encode(received)),
        ),
        ("x-fake-prompt-tokens", HeaderValue::from(prompt_tokens)),
    ];
    if anthropic {
        echo.push((
            "x-fake-received-anthropic-version",
            copy("anthropic-version"),
        ));
    }
    echo
}

fn check_auth(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &config.require_key else {
        return Ok(());
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let api_key = headers.get("api-key").and_then(|v| v.to_str().ok());
    if bearer == Some(key.as_str()) || api_key == Some(key.as_str()) {
        return Ok(());
    }
    let given = bearer.or(api_key).unwrap_or("");
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        format!(
            "Incorrect API key provided: {}. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
            mask_key(given)
        ),
    )
    .code("invalid_api_key"))
}

/// `sk-abc***wxyz`, like OpenAI's error message.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// The error a `x-fake-status` asks for.
fn simulated_error(status: StatusCode) -> ApiError {
    match status.as_u16() {
        429 => ApiError::new(
            status,
            "requests",
            "Rate limit reached for requests (simulated by fake-provider). Please try again in 1s.",
        )
        .code("rate_limit_exceeded"),
        500..=599 => ApiError::new(
            status,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        ),
        _ => ApiError::new(
            status,
            "invalid_request_error",
            format!(
                "Simulated error (status {}) from fake-provider.",
                status.as_u16()
            ),
        ),
    }
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("serialisable");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

fn error_response(err: &ApiError) -> Response {
    let mut resp = json_response(err.status, &err.body());
    if err.status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_id(prefix: &str) -> String {
    let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(29)
        .collect();
    format!("{prefix}{tail}")
}

/// The fake completion for a request: its pieces, finish reason and the
/// number of tokens of its text (counted with the tokenizer).
struct Completion {
    pieces: Vec<&'static str>,
    text: String,
    finish_reason: &'static str,
    content_tokens: u64,
}

fn complete(req: &GenerationRequest, ctl: &Controls) -> Completion {
    let mut n = ctl.completion_tokens;
    let mut finish_reason = "stop";
    if let Some(max) = req.max_tokens {
        if max < n {
            n = max;
            finish_reason = "length";
        }
    }
    let pieces = tokens::completion_pieces(n as usize);
    let text = pieces.concat();
    let content_tokens = tokens::count(req.tokenizer, &text);
    Completion {
        pieces,
        text,
        finish_reason,
        content_tokens,
    }
}

fn sse_data(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("serialisable")
}

/// Arguments of every tool call the OpenAI mode makes.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;
/// Largest piece of streamed tool-call arguments.
const ARGUMENT_PIECE_BYTES: usize = 6;

/// A tool call the OpenAI mode answers with.
struct ToolCall<'a> {
    id: String,
    name: &'a str,
    tokens: u64,
}

/// The tool to call: `x-fake-tool-call` when the request offers tools (and `tool_choice` is not
/// `"none"`); an error when the request's tools do not include it.
fn openai_tool_call<'a>(
    req: &GenerationRequest,
    ctl: &'a Controls,
) -> Result<Option<ToolCall<'a>>, ApiError> {
    let Some(name) = ctl.tool_call.as_deref() else {
        return Ok(None);
    };
    if req.tools.is_empty() || req.tool_choice_none {
        return Ok(None);
    }
    if !req.tools.iter().any(|t| t == name) {
        return Err(ApiError::invalid(format!(
            "fake-provider: x-fake-tool-call names tool '{name}', which the request's tools do \
             not define"
        ))
        .param("tools"));
    }
    let id = match &ctl.fixed_id {
        Some(fixed) => format!("call_{}", &hex::encode(Sha256::digest(fixed))[..24]),
        None => random_id("call_")[..29].to_string(),
    };
    let tokens = tokens::count(req.tokenizer, name) + tokens::count(req.tokenizer, TOOL_ARGUMENTS);
    Ok(Some(ToolCall { id, name, tokens }))
}

/// OpenAI's in-band stream error (`data: {"error": ...}`), sent by
/// `x-fake-stream-error-after-events`.
fn openai_stream_error_frame() -> String {
    let err = ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    );
    format!("data: {}\n\n", sse_data(&err.body()))
}

fn chat(req: &GenerationRequest, ctl: &Controls) -> Result<Response, ApiError> {
    let tool = openai_tool_call(req, ctl)?;
    let c = complete(req, ctl);
    let (finish_reason, completion_tokens) = match &tool {
        Some(call) => ("tool_calls", call.tokens),
        None => (c.finish_reason, c.content_tokens),
    };
    let (id, created) = ctl.id_and_created("chatcmpl-");
    let usage = (!ctl.no_usage).then(|| {
        ChatUsage::new(
            req.prompt_tokens,
            completion_tokens,
            ctl.cached_tokens,
            ctl.reasoning_tokens,
        )
    });
    if !req.stream {
        let (content, tool_calls) = match &tool {
            Some(call) => (
                None,
                Some(vec![api::ToolCallOut {
                    id: &call.id,
                    kind: "function",
                    function: api::FunctionCallOut {
                        name: call.name,
                        arguments: TOOL_ARGUMENTS,
                    },
                }]),
            ),
            None => (Some(c.text.as_str()), None),
        };
        let body = api::ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model: &req.model,
            choices: vec![api::ChatChoice {
                index: 0,
                message: api::ChatMessage {
                    role: "assistant",
                    content,
                    tool_calls,
                    refusal: None,
                    annotations: [],
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
            service_tier: api::SERVICE_TIER,
            system_fingerprint: api::SYSTEM_FINGERPRINT,
        };
        return Ok(json_response(StatusCode::OK, &body));
    }
    // Like OpenAI: with include_usage every chunk has `"usage": null` and a
    // last chunk with no choices carries the usage; otherwise no usage key.
    let with_usage = req.include_usage && !ctl.no_usage;
    let chunk_usage = if with_usage { Some(None) } else { None };
    let event = |choices: Vec<api::ChunkChoice>, usage: api::ChunkUsage<api::ChatUsage>| {
        sse_data(&api::ChatChunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model: &req.model,
            service_tier: api::SERVICE_TIER,
            system_fingerprint: api::SYSTEM_FINGERPRINT,
            choices,
            usage,
        })
    };
    let chunk = |delta: api::Delta, finish_reason: Option<&'static str>| {
        let choice = api::ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        };
        event(vec![choice], chunk_usage.clone())
    };
    let mut events = Vec::new();
    match &tool {
        // Like OpenAI: the first delta has the call's id, type and name with empty arguments,
        // the next ones pieces of the arguments.
        Some(call) => {
            events.push(chunk(
                api::Delta {
                    role: Some("assistant"),
                    content: Some(None),
                    tool_calls: Some(vec![api::ToolCallDelta {
                        index: 0,
                        id: Some(&call.id),
                        kind: Some("function"),
                        function: api::FunctionDelta {
                            name: Some(call.name),
                            arguments: "",
                        },
                    }]),
                    refusal: Some(None),
                },
                None,
            ));
            for piece in anthropic::json_pieces(TOOL_ARGUMENTS, ARGUMENT_PIECE_BYTES) {
                events.push(chunk(
                    api::Delta {
                        tool_calls: Some(vec![api::ToolCallDelta {
                            index: 0,
                            id: None,
                            kind: None,
                            function: api::FunctionDelta {
                                name: None,
                                arguments: piece,
                            },
                        }]),
                        ..Default::default()
                    },
                    None,
                ));
            }
        }
        None => {
            events.push(chunk(
                api::Delta {
                    role: Some("assistant"),
                    content: Some(Some("")),
                    refusal: Some(None),
                    ..Default::default()
                },
                None,
            ));
            for piece in &c.pieces {
                events.push(chunk(
                    api::Delta {
                        content: Some(Some(piece)),
                        ..Default::default()
                    },
                    None,
                ));
            }
        }
    }
    events.push(chunk(api::Delta::default(), Some(finish_reason)));
    if with_usage {
        events.push(event(vec![], Some(usage)));
    }
    events.push("[DONE]".to_owned());
    let frames = events
        .into_iter()
        .map(|data| format!("data: {data}\n\n"))
        .collect();
    let error_after = ctl
        .stream_error_after_events
        .map(|n| (n, openai_stream_error_frame()));
    Ok(sse::frames_response(
        frames,
        "text/event-stream",
        ctl.chunk_delay,
        ctl.abort_after_events,
        error_after,
    ))
}

fn text_completion(req: &GenerationRequest, ctl: &Controls) -> Response {
    let c = complete(req, ctl);
    let (id, created) = ctl.id_and_created("cmpl-");
    let usage = (!ctl.no_usage).then(|| TextUsage {
        prompt_tokens: req.prompt_tokens,
        completion_tokens: c.content_tokens,
        total_tokens: req.prompt_tokens + c.content_tokens,
    });
    let body = |choices, usage| api::TextCompletion {
        id: &id,
        object: "text_completion",
        created,
        model: &req.model,
        choices,
        usage,
    };
    let choice = |text, finish_reason| api::TextChoice {
        text,
        index: 0,
        logprobs: None,
        finish_reason,
    };
    if !req.stream {
        let value = body(
            vec![choice(c.text.as_str(), Some(c.finish_reason))],
            usage.map(Some),
        );
        return json_response(StatusCode::OK, &value);
    }
    let with_usage = req.include_usage && !ctl.no_usage;
    let chunk_usage = if with_usage { Some(None) } else { None };
    let mut events: Vec<String> = c
        .pieces
        .iter()
        .map(|piece| sse_data(&body(vec![choice(piece, None)], chunk_usage.clone())))
        .collect();
    events.push(sse_data(&body(
        vec![choice("", Some(c.finish_reason))],
        chunk_usage.clone(),
    )));
    if with_usage {
        events.push(sse_data(&body(vec![], Some(usage))));
    }
    events.push("[DONE]".to_owned());
    sse::response(events, ctl.chunk_delay, ctl.abort_after_events)
}

fn embeddings(req: &EmbeddingsRequest, ctl: &Controls) -> Response {
    let data = req
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = match input {
                api::EmbeddingInput::Text(t) => embed::embed_text(t, req.dimensions),
                api::EmbeddingInput::Tokens(ids) => match tokens::bpe(req.tokenizer).decode(ids) {
                    Ok(text) => embed::embed_text(&text, req.dimensions),
                    Err(_) => embed::embed_token_ids(ids, req.dimensions),
                },
            };
            let embedding = match req.encoding_format {
                api::EncodingFormat::Float => api::EmbeddingVector::Float(v),
                api::EncodingFormat::Base64 => api::EmbeddingVector::Base64(embed::to_base64(&v)),
            };
            api::Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let body = api::EmbeddingList {
        object: "list",
        data,
        model: &req.model,
        usage: (!ctl.no_usage).then_some(api::EmbeddingUsage {
            prompt_tokens: req.prompt_tokens,
            total_tokens: req.prompt_tokens,
        }),
    };
    json_response(StatusCode::OK, &body)
}

async fn handle(
    State(config): State<Arc<Config>>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    for (k, v) in &config.forced_headers {
        headers.insert(k, v.clone());
    }
    let endpoint = route(&method, uri.path());
    let anthropic = endpoint == Some(Endpoint::Messages);
    let (parsed, echo) = {
        let (uri, headers, body) = (uri.clone(), headers.clone(), body.clone());
        // Tokenising can take a while on big bodies: keep it off the reactor.
        tokio::task::spawn_blocking(move || {
            let parsed = endpoint.map(|e| parse(e, &body));
            let prompt_tokens = match &parsed {
                Some(Ok(p)) => p.prompt_tokens(),
                _ => 0,
            };
            let echo = echo_headers(&uri, &headers, &body, prompt_tokens, anthropic);
            (parsed, echo)
        })
        .await
        .expect("request parsing does not panic")
    };
    let controls = Controls::from_headers(&headers);
    if let Ok(c) = &controls {
        if !c.delay.is_zero() {
            tokio::time::sleep(c.delay).await;
        }
    }
    if let Some(Ok(Parsed::Messages(req))) = parsed {
        let request_id = messages::request_id();
        let response = messages::respond(&config, &headers, controls, req, &request_id);
        return finish(&config, &method, &uri, response, echo, request_id);
    }
    let result = (|| {
        check_auth(&config, &headers)?;
        let ctl = controls?;
        if let Some(status) = ctl
            .status
            .filter(|s| s.is_client_error() || s.is_server_error())
        {
            return Err(simulated_error(status));
        }
        let Some(parsed) = parsed else {
            return Err(
                ApiError::invalid(format!("Invalid URL ({} {})", method, uri.path()))
                    .with_status(StatusCode::NOT_FOUND),
            );
        };
        Ok(match parsed? {
            Parsed::Chat(req) => chat(&req, &ctl)?,
            Parsed::Completion(req) => text_completion(&req, &ctl),
            Parsed::Embeddings(req) => embeddings(&req, &ctl),
            Parsed::Models => json_response(StatusCode::OK, &api::models_list()),
            Parsed::Messages(_) => unreachable!("answered above"),
        })
    })();
    let response = result.unwrap_or_else(|e| error_response(&e));
    finish(&config, &method, &uri, response, echo, random_id("req_"))
}

/// Adds the echo headers and `x-request-id`, and logs the request.
fn finish(
    config: &Config,
    method: &Method,
    uri: &Uri,
    mut response: Response,
    echo: Vec<(&'static str, HeaderValue)>,
    request_id: String,
) -> Response {
    let out = response.headers_mut();
    for (name, value) in echo {
        out.insert(HeaderName::from_static(name), value);
    }
    out.insert(
        "x-request-id",
        HeaderValue::from_str(&request_id).expect("ascii"),
    );
    if config.verbose {
        eprintln!("{method} {uri} -> {}", response.status().as_u16());
    }
    response
}

#[cfg(test)]
mod tests;
