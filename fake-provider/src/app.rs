//! The HTTP application: routing by path suffix, auth, control headers, echo
//! headers and the OpenAI endpoints (the Anthropic Messages API is in [`messages`], the
//! Responses API in [`responses`]).

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
use tiktoken_rs::tokenizer::Tokenizer;

use crate::api::{
    self, ApiError, ChatUsage, EmbeddingsRequest, GenerationRequest, ResponseFormat, TextUsage,
};
use crate::{anthropic, embed, logprobs, sse, tokens};

mod cloud;
mod generate;
mod messages;
mod responses;

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
    /// The responses `POST /responses` stored.
    pub store: responses::Store,
    /// The credentials of the cloud providers' endpoints.
    pub clouds: Clouds,
}

/// What the cloud endpoints accept (see [`cloud`]).
#[derive(Debug, Clone)]
pub struct Clouds {
    /// The AWS credentials and region a Bedrock SigV4 signature must be made with.
    pub aws: crate::sigv4::Keys,
    /// A Bedrock API key accepted as `Authorization: Bearer` instead of a signature.
    pub bedrock_api_key: Option<String>,
    /// When set, the only Gemini API key accepted (else any key).
    pub gemini_api_key: Option<String>,
    /// The tokens the metadata server issued, which Vertex AI accepts.
    pub gcp_tokens: crate::gcp::Tokens,
    /// When set, the only project Vertex AI paths may name (the metadata server's project,
    /// else `fake-project`).
    pub gcp_project: Option<String>,
}

/// The AWS test credentials of AWS's documentation examples.
pub const DEFAULT_AWS_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
pub const DEFAULT_AWS_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const DEFAULT_AWS_REGION: &str = "us-east-1";

impl Default for Clouds {
    fn default() -> Self {
        Clouds {
            aws: crate::sigv4::Keys {
                access_key_id: DEFAULT_AWS_ACCESS_KEY_ID.to_owned(),
                secret_access_key: DEFAULT_AWS_SECRET_ACCESS_KEY.to_owned(),
                session_token: None,
                region: DEFAULT_AWS_REGION.to_owned(),
            },
            bedrock_api_key: None,
            gemini_api_key: None,
            gcp_tokens: Default::default(),
            gcp_project: None,
        }
    }
}

pub fn router(config: Config) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(config))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// Anthropic's `POST /v1/messages`.
    Messages,
    /// Anthropic's `POST /v1/messages/count_tokens`.
    CountTokens,
    Chat,
    Completions,
    Embeddings,
    Models,
    Responses(responses::Op),
}

/// Matches the path's suffix, so any prefix (`/v1`, `/openai/v1`, ...) works.
fn route(method: &Method, path: &str) -> Option<Endpoint> {
    let path = path.trim_end_matches('/');
    let endpoint = if path.ends_with("/v1/messages/count_tokens") {
        Endpoint::CountTokens
    } else if path.ends_with("/v1/messages") {
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
        return responses::route(method, path).map(Endpoint::Responses);
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
    /// `x-fake-first-event-delay-ms`: a stream's headers go out at once, its first event only
    /// after this long (a provider that stalls after answering 200).
    first_event_delay: Duration,
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
    /// `x-fake-error-in-200`: a non-streamed chat completion answers `200` with an OpenAI
    /// error object as its body (a server_error), as some OpenAI-compatible servers do.
    error_in_200: bool,
    /// `x-fake-retry-after`: the `retry-after` (seconds) of a simulated 429 or 503 (a 429
    /// says `1` without it; a 503 says nothing).
    retry_after: Option<u64>,
    /// `x-fake-rate-limited-key`: requests carrying this key (as a bearer token, `api-key` or
    /// `x-api-key`) get a 429, as one account's key that hit its limit while others serve.
    rate_limited_key: Option<String>,
}

/// The `created` timestamp used with `x-fake-id`.
const FIXED_CREATED: u64 = 1_700_000_000;

impl Controls {
    /// How a streamed answer is paced.
    fn pace(&self) -> sse::Pace {
        sse::Pace {
            first: self.first_event_delay,
            between: self.chunk_delay,
        }
    }

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
            first_event_delay: Duration::from_millis(
                num(headers, "x-fake-first-event-delay-ms")?.unwrap_or(0),
            ),
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
            error_in_200: num(headers, "x-fake-error-in-200")?.is_some_and(|n| n != 0),
            retry_after: num(headers, "x-fake-retry-after")?,
            rate_limited_key: headers
                .get("x-fake-rate-limited-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}

/// A request parsed for its endpoint.
enum Parsed {
    /// Anthropic errors have their own shape, so they travel inside; `count_only` for
    /// `/v1/messages/count_tokens`.
    Messages {
        req: Result<anthropic::MessagesRequest, anthropic::Error>,
        count_only: bool,
    },
    Chat(GenerationRequest),
    Completion(GenerationRequest),
    Embeddings(EmbeddingsRequest),
    Models,
    Responses(responses::Request),
}

impl Parsed {
    fn prompt_tokens(&self) -> u64 {
        match self {
            Parsed::Messages { req, .. } => req.as_ref().map_or(0, |r| r.prompt_tokens),
            Parsed::Chat(r) | Parsed::Completion(r) => r.prompt_tokens,
            Parsed::Embeddings(r) => r.prompt_tokens,
            Parsed::Models => 0,
            Parsed::Responses(r) => r.prompt_tokens(),
        }
    }
}

fn parse(
    endpoint: Endpoint,
    uri: &Uri,
    body: &[u8],
    store: &responses::Store,
) -> Result<Parsed, ApiError> {
    let generation = |parse: fn(&serde_json::Map<String, serde_json::Value>) -> _| {
        api::parse_object(body).and_then(|obj| parse(&obj))
    };
    Ok(match endpoint {
        Endpoint::Models => Parsed::Models,
        Endpoint::Messages | Endpoint::CountTokens => {
            let count_only = endpoint == Endpoint::CountTokens;
            Parsed::Messages {
                req: anthropic::parse_messages(body, !count_only),
                count_only,
            }
        }
        Endpoint::Chat => Parsed::Chat(generation(api::parse_chat)?),
        Endpoint::Completions => Parsed::Completion(generation(api::parse_completion)?),
        Endpoint::Embeddings => {
            Parsed::Embeddings(api::parse_object(body).and_then(|o| api::parse_embeddings(&o))?)
        }
        Endpoint::Responses(op) => Parsed::Responses(responses::parse(op, uri, body, store)?),
    })
}

/// Headers whose values are credentials: echoed only as a [`fingerprint`].
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "x-amz-security-token",
];

/// `sha256:` and the first 16 hex digits of the SHA-256 of a credential header's whole value
/// (`Bearer sk-...` for `authorization`): enough for a test to tell which key arrived, nothing
/// a demo can leak.
pub fn fingerprint(value: &[u8]) -> String {
    format!("sha256:{}", &hex::encode(Sha256::digest(value))[..16])
}

/// A header's value as echoed: a credential's fingerprint, or the value.
fn echoed_value(name: &str, value: &HeaderValue) -> String {
    if CREDENTIAL_HEADERS.contains(&name) {
        fingerprint(value.as_bytes())
    } else {
        String::from_utf8_lossy(value.as_bytes()).into_owned()
    }
}

/// What reached the provider, echoed on every response (credentials as fingerprints). For the
/// Anthropic endpoint (`anthropic`), `x-fake-received-api-key` is the `x-api-key` header and
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
        let value = echoed_value(name.as_str(), value);
        received
            .entry(name.as_str())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let received = serde_json::to_vec(&received).expect("map of strings");
    let text = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    let copy = |name: &str| match headers.get(name) {
        Some(v) if CREDENTIAL_HEADERS.contains(&name) => text(&fingerprint(v.as_bytes())),
        Some(v) => v.clone(),
        None => HeaderValue::from_static(""),
    };
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
    let bearer = bearer_token(headers);
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
    let retry_after = match (err.retry_after, err.status) {
        (Some(s), _) => Some(s),
        (None, StatusCode::TOO_MANY_REQUESTS) => Some(1),
        (None, _) => None,
    };
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// The token of an `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The key a request presents: a bearer token, `api-key` or `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers).or_else(|| {
        ["api-key", "x-api-key"]
            .iter()
            .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
    })
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

/// One streamed piece of a completion: its text and the bytes of each of its tokens (one
/// token, or a few when a character spans several).
struct Piece {
    text: String,
    tokens: Vec<Vec<u8>>,
}

/// The fake completion of one choice: its pieces, finish reason and the number of tokens of
/// its text (counted with the tokenizer).
struct Completion {
    pieces: Vec<Piece>,
    text: String,
    finish_reason: &'static str,
    content_tokens: u64,
}

/// Choice `choice`'s completion: `x-fake-completion-tokens` one-token words (capped by
/// `max_tokens`) for text; for `json_object` the object `{"answer": <those words>}`, for
/// `json_schema` an instance of the schema, cut after `max_tokens` tokens (then no longer
/// JSON, with finish reason `length`, as OpenAI's).
fn complete(req: &GenerationRequest, ctl: &Controls, choice: u32) -> Result<Completion, ApiError> {
    let json = match &req.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            let words = tokens::choice_pieces(choice, ctl.completion_tokens as usize).concat();
            Some(serde_json::json!({ "answer": words }))
        }
        ResponseFormat::JsonSchema { name, schema } => {
            Some(crate::schema::instance(schema, choice).map_err(|why| {
                ApiError::invalid(format!(
                    "fake-provider cannot generate an instance of response_format '{name}': {why}"
                ))
                .param("response_format.json_schema.schema")
            })?)
        }
    };
    if let Some(json) = json {
        return Ok(tokenized(req.tokenizer, req.max_tokens, &sse_data(&json)));
    }
    Ok(words(
        req.tokenizer,
        choice,
        ctl.completion_tokens,
        req.max_tokens,
    ))
}

/// Choice `choice`'s `n` one-token words, cut after `max_tokens` (finish reason `length`).
fn words(tokenizer: Tokenizer, choice: u32, n: u64, max_tokens: Option<u64>) -> Completion {
    let mut n = n;
    let mut finish_reason = "stop";
    if let Some(max) = max_tokens {
        if max < n {
            n = max;
            finish_reason = "length";
        }
    }
    let pieces: Vec<Piece> = tokens::choice_pieces(choice, n as usize)
        .into_iter()
        .map(|p| Piece {
            text: p.to_owned(),
            tokens: vec![p.as_bytes().to_vec()],
        })
        .collect();
    let text: String = pieces.iter().map(|p| p.text.as_str()).collect();
    let content_tokens = tokens::count(tokenizer, &text);
    Completion {
        pieces,
        text,
        finish_reason,
        content_tokens,
    }
}

/// A completion whose text is `text` cut after `max_tokens` tokens, streamed one token a
/// piece (a few when a character spans tokens).
fn tokenized(tokenizer: Tokenizer, max_tokens: Option<u64>, text: &str) -> Completion {
    let bpe = tokens::bpe(tokenizer);
    let mut ids = bpe.encode_ordinary(text);
    let mut finish_reason = "stop";
    if let Some(max) = max_tokens.and_then(|m| usize::try_from(m).ok()) {
        if max < ids.len() {
            ids.truncate(max);
            finish_reason = "length";
        }
    }
    let mut pieces = Vec::new();
    let (mut bytes, mut toks) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let token = bpe.decode_bytes(&[*id]).unwrap_or_default();
        bytes.extend_from_slice(&token);
        toks.push(token);
        let complete = std::str::from_utf8(&bytes).is_ok();
        if complete || i + 1 == ids.len() {
            pieces.push(Piece {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                tokens: std::mem::take(&mut toks),
            });
            bytes.clear();
        }
    }
    let text: String = pieces.iter().map(|p| p.text.as_str()).collect();
    Completion {
        pieces,
        text,
        finish_reason,
        content_tokens: ids.len() as u64,
    }
}

fn sse_data(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("serialisable")
}

/// Chat `logprobs.content` entries of `pieces`, the first at token position `first`.
fn chat_logprob_entries(
    pieces: &[Piece],
    choice: u32,
    first: usize,
    top: u32,
) -> Vec<api::TokenLogprob> {
    pieces
        .iter()
        .flat_map(|p| &p.tokens)
        .enumerate()
        .map(|(i, t)| logprobs::chat_entry(t, choice, first + i, top))
        .collect()
}

/// A chat choice's `logprobs` with these entries (`content: null` without content).
fn chat_logprobs(content: Option<Vec<api::TokenLogprob>>) -> api::ChatLogprobs {
    api::ChatLogprobs {
        content,
        refusal: None,
    }
}

/// Arguments of every tool call the OpenAI mode makes.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;
/// Largest piece of streamed tool-call arguments.
const ARGUMENT_PIECE_BYTES: usize = 6;

/// The tool every choice of an OpenAI answer calls.
struct ToolCall<'a> {
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
    let tokens = tokens::count(req.tokenizer, name) + tokens::count(req.tokenizer, TOOL_ARGUMENTS);
    Ok(Some(ToolCall { name, tokens }))
}

/// The id of choice `choice`'s tool call: derived from `x-fake-id` when given (so two answers
/// to one request are identical), else random.
fn tool_call_id(ctl: &Controls, choice: u32) -> String {
    match &ctl.fixed_id {
        Some(fixed) if choice == 0 => format!("call_{}", &hex::encode(Sha256::digest(fixed))[..24]),
        Some(fixed) => format!(
            "call_{}",
            &hex::encode(Sha256::digest(format!("{fixed}#{choice}")))[..24]
        ),
        None => random_id("call_")[..29].to_string(),
    }
}

/// OpenAI's in-band stream error (`data: {"error": ...}`), sent by
/// `x-fake-stream-error-after-events`.
fn openai_stream_error_frame() -> String {
    format!("data: {}\n\n", sse_data(&openai_server_error().body()))
}

/// OpenAI's error for a failure on its side.
fn openai_server_error() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    )
}

/// What one choice of a chat answer says: text, or a call of the tool.
enum Said {
    Text(Completion),
    Call(String),
}

struct ChatAnswer {
    index: u32,
    said: Said,
    finish_reason: &'static str,
    completion_tokens: u64,
}

/// The `n` choices of a chat answer.
fn chat_answers(
    req: &GenerationRequest,
    ctl: &Controls,
    tool: Option<&ToolCall>,
) -> Result<Vec<ChatAnswer>, ApiError> {
    (0..req.n)
        .map(|index| {
            Ok(match tool {
                Some(call) => ChatAnswer {
                    index,
                    said: Said::Call(tool_call_id(ctl, index)),
                    finish_reason: "tool_calls",
                    completion_tokens: call.tokens,
                },
                None => {
                    let c = complete(req, ctl, index)?;
                    ChatAnswer {
                        index,
                        finish_reason: c.finish_reason,
                        completion_tokens: c.content_tokens,
                        said: Said::Text(c),
                    }
                }
            })
        })
        .collect()
}

/// Events of several choices, interleaved as OpenAI streams them: each choice's next event in
/// turn, so a client must tell them apart by `index`.
fn interleave(per_choice: Vec<Vec<String>>) -> Vec<String> {
    let longest = per_choice.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(per_choice.iter().map(Vec::len).sum());
    for step in 0..longest {
        out.extend(
            per_choice
                .iter()
                .filter_map(|events| events.get(step).cloned()),
        );
    }
    out
}

fn chat(req: &GenerationRequest, ctl: &Controls) -> Result<Response, ApiError> {
    if ctl.error_in_200 && !req.stream {
        return Ok(json_response(StatusCode::OK, &openai_server_error().body()));
    }
    let tool = openai_tool_call(req, ctl)?;
    let answers = chat_answers(req, ctl, tool.as_ref())?;
    let completion_tokens = answers.iter().map(|a| a.completion_tokens).sum();
    let (id, created) = ctl.id_and_created("chatcmpl-");
    let usage = (!ctl.no_usage).then(|| {
        ChatUsage::new(
            req.prompt_tokens,
            completion_tokens,
            ctl.cached_tokens,
            ctl.reasoning_tokens,
        )
    });
    let name = tool.as_ref().map_or("", |t| t.name);
    if !req.stream {
        let choices = answers
            .iter()
            .map(|a| {
                let (content, tool_calls, logprob_content) = match &a.said {
                    Said::Call(call_id) => (
                        None,
                        Some(vec![api::ToolCallOut {
                            id: call_id,
                            kind: "function",
                            function: api::FunctionCallOut {
                                name,
                                arguments: TOOL_ARGUMENTS,
                            },
                        }]),
                        None,
                    ),
                    Said::Text(c) => (
                        Some(c.text.as_str()),
                        None,
                        req.logprobs
                            .map(|top| chat_logprob_entries(&c.pieces, a.index, 0, top)),
                    ),
                };
                api::ChatChoice {
                    index: a.index,
                    message: api::ChatMessage {
                        role: "assistant",
                        content,
                        tool_calls,
                        refusal: None,
                        annotations: [],
                    },
                    logprobs: req.logprobs.map(|_| chat_logprobs(logprob_content)),
                    finish_reason: a.finish_reason,
                }
            })
            .collect();
        let body = api::ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model: &req.model,
            choices,
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
    let chunk = |index: u32,
                 delta: api::Delta,
                 logprobs: Option<api::ChatLogprobs>,
                 finish_reason: Option<&'static str>| {
        let choice = api::ChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        };
        event(vec![choice], chunk_usage.clone())
    };
    let mut per_choice = Vec::with_capacity(answers.len());
    for a in &answers {
        let mut events = Vec::new();
        let index = a.index;
        match &a.said {
            // Like OpenAI: the first delta has the call's id, type and name with empty
            // arguments, the next ones pieces of the arguments.
            Said::Call(call_id) => {
                events.push(chunk(
                    index,
                    api::Delta {
                        role: Some("assistant"),
                        content: Some(None),
                        tool_calls: Some(vec![api::ToolCallDelta {
                            index: 0,
                            id: Some(call_id),
                            kind: Some("function"),
                            function: api::FunctionDelta {
                                name: Some(name),
                                arguments: "",
                            },
                        }]),
                        refusal: Some(None),
                    },
                    req.logprobs.map(|_| chat_logprobs(None)),
                    None,
                ));
                for piece in anthropic::json_pieces(TOOL_ARGUMENTS, ARGUMENT_PIECE_BYTES) {
                    events.push(chunk(
                        index,
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
                        req.logprobs.map(|_| chat_logprobs(None)),
                        None,
                    ));
                }
            }
            Said::Text(c) => {
                // Like OpenAI: the role chunk's logprobs list no token yet.
                events.push(chunk(
                    index,
                    api::Delta {
                        role: Some("assistant"),
                        content: Some(Some("")),
                        refusal: Some(None),
                        ..Default::default()
                    },
                    req.logprobs.map(|_| chat_logprobs(Some(Vec::new()))),
                    None,
                ));
                let mut position = 0;
                for piece in &c.pieces {
                    let logprobs = req.logprobs.map(|top| {
                        let entries =
                            chat_logprob_entries(std::slice::from_ref(piece), index, position, top);
                        chat_logprobs(Some(entries))
                    });
                    position += piece.tokens.len();
                    events.push(chunk(
                        index,
                        api::Delta {
                            content: Some(Some(piece.text.as_str())),
                            ..Default::default()
                        },
                        logprobs,
                        None,
                    ));
                }
            }
        }
        events.push(chunk(
            index,
            api::Delta::default(),
            None,
            Some(a.finish_reason),
        ));
        per_choice.push(events);
    }
    let mut events = interleave(per_choice);
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
        .map(|n| (n, vec![openai_stream_error_frame()]));
    Ok(sse::frames_response(
        frames,
        "text/event-stream",
        ctl.pace(),
        ctl.abort_after_events,
        error_after,
    ))
}

/// The legacy `logprobs` of `pieces`, the first at token position `first` and character
/// `offset` (after the prompt).
fn legacy_logprobs(
    pieces: &[Piece],
    choice: u32,
    first: usize,
    offset: usize,
    top: u32,
) -> api::LegacyLogprobs {
    let tokens: Vec<Vec<u8>> = pieces.iter().flat_map(|p| p.tokens.clone()).collect();
    logprobs::legacy(&tokens, choice, first, offset, top)
}

fn text_completion(req: &GenerationRequest, ctl: &Controls) -> Result<Response, ApiError> {
    let completions = (0..req.n)
        .map(|i| complete(req, ctl, i))
        .collect::<Result<Vec<_>, _>>()?;
    let completion_tokens: u64 = completions.iter().map(|c| c.content_tokens).sum();
    let (id, created) = ctl.id_and_created("cmpl-");
    let usage = (!ctl.no_usage).then(|| TextUsage {
        prompt_tokens: req.prompt_tokens,
        completion_tokens,
        total_tokens: req.prompt_tokens + completion_tokens,
    });
    let body = |choices, usage| api::TextCompletion {
        id: &id,
        object: "text_completion",
        created,
        model: &req.model,
        choices,
        usage,
    };
    let choice = |text, index, logprobs, finish_reason| api::TextChoice {
        text,
        index,
        logprobs,
        finish_reason,
    };
    if !req.stream {
        let choices = completions
            .iter()
            .zip(0..)
            .map(|(c, i)| {
                let logprobs = req
                    .logprobs
                    .map(|top| legacy_logprobs(&c.pieces, i, 0, req.prompt_chars, top));
                choice(c.text.as_str(), i, logprobs, Some(c.finish_reason))
            })
            .collect();
        return Ok(json_response(
            StatusCode::OK,
            &body(choices, usage.map(Some)),
        ));
    }
    let with_usage = req.include_usage && !ctl.no_usage;
    let chunk_usage = if with_usage { Some(None) } else { None };
    let per_choice = completions
        .iter()
        .zip(0..)
        .map(|(c, i)| {
            let (mut position, mut offset) = (0, req.prompt_chars);
            let mut events: Vec<String> = c
                .pieces
                .iter()
                .map(|piece| {
                    let logprobs = req.logprobs.map(|top| {
                        legacy_logprobs(std::slice::from_ref(piece), i, position, offset, top)
                    });
                    position += piece.tokens.len();
                    offset += piece.text.chars().count();
                    let text = piece.text.as_str();
                    sse_data(&body(
                        vec![choice(text, i, logprobs, None)],
                        chunk_usage.clone(),
                    ))
                })
                .collect();
            events.push(sse_data(&body(
                vec![choice("", i, None, Some(c.finish_reason))],
                chunk_usage.clone(),
            )));
            events
        })
        .collect();
    let mut events = interleave(per_choice);
    if with_usage {
        events.push(sse_data(&body(vec![], Some(usage))));
    }
    events.push("[DONE]".to_owned());
    Ok(sse::response(events, ctl.pace(), ctl.abort_after_events))
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
    let received = headers.clone();
    for (k, v) in &config.forced_headers {
        headers.insert(k, v.clone());
    }
    if let Some(cloud) = cloud::route(&method, uri.path()) {
        return cloud::handle(config, cloud, method, uri, received, headers, body).await;
    }
    let endpoint = route(&method, uri.path());
    let anthropic = matches!(endpoint, Some(Endpoint::Messages | Endpoint::CountTokens));
    let (parsed, echo) = {
        let (uri, headers, body) = (uri.clone(), headers.clone(), body.clone());
        let store = config.store.clone();
        // Tokenising can take a while on big bodies: keep it off the reactor.
        tokio::task::spawn_blocking(move || {
            let parsed = endpoint.map(|e| parse(e, &uri, &body, &store));
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
    if let Some(Ok(Parsed::Messages { req, count_only })) = parsed {
        let request_id = messages::request_id();
        let response = messages::respond(&config, &headers, controls, req, count_only, &request_id);
        return finish(&config, &method, &uri, response, echo, request_id);
    }
    let result = (|| {
        check_auth(&config, &headers)?;
        let ctl = controls?;
        let limited = ctl
            .rate_limited_key
            .as_deref()
            .is_some_and(|k| presented_key(&headers) == Some(k));
        let status = ctl
            .status
            .filter(|s| s.is_client_error() || s.is_server_error())
            .or(limited.then_some(StatusCode::TOO_MANY_REQUESTS));
        if let Some(status) = status {
            let mut e = simulated_error(status);
            e.retry_after = ctl.retry_after;
            return Err(e);
        }
        let Some(parsed) = parsed else {
            return Err(
                ApiError::invalid(format!("Invalid URL ({} {})", method, uri.path()))
                    .with_status(StatusCode::NOT_FOUND),
            );
        };
        Ok(match parsed? {
            Parsed::Chat(req) => chat(&req, &ctl)?,
            Parsed::Completion(req) => text_completion(&req, &ctl)?,
            Parsed::Embeddings(req) => embeddings(&req, &ctl),
            Parsed::Models => json_response(StatusCode::OK, &api::models_list()),
            Parsed::Responses(req) => responses::respond(&config.store, req, &ctl)?,
            Parsed::Messages { .. } => unreachable!("answered above"),
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
