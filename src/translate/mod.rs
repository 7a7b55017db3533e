//! Translators between the API a client speaks and the one its provider speaks, one module per
//! direction:
//! - [`openai_to_anthropic`]: an OpenAI chat client in front of an Anthropic Messages provider;
//! - [`anthropic_to_openai`]: a Messages API client (Claude Code, the anthropic SDKs) in front
//!   of an OpenAI-format provider;
//! - [`openai_to_gemini`]: an OpenAI chat client in front of Google Gemini (the Gemini API, or
//!   Vertex AI's `publishers/google` models);
//! - [`responses_to_chat`]: a Responses API client (the Agents SDK, Codex) in front of a
//!   provider that serves only chat completions. An Anthropic provider is reached through two
//!   directions: Responses → chat → Messages, and back;
//! - [`openai_to_bedrock`]: an OpenAI chat client in front of AWS Bedrock's Converse API.
//!
//! Every direction has the same four verbs: `translate_request` (the client's request body as
//! the provider takes it, with the request header changes), `translate_response` (a whole JSON
//! answer, a message or an error), `translate_stream` (the state machine that translates an SSE
//! answer event by event, keeping only the ids and counters it needs: bounded memory, whatever
//! the stream's length) and `translate_error` (a provider's error in the client's shape).
//! [`Direction`] dispatches by direction; [`ResponseTranslator`] drives the response side for
//! the filters: JSON, SSE or AWS event-stream frames ([`crate::eventstream`], read into the same
//! [`StreamTranslate::event`]) by content type, whether it needs the whole body, and the header
//! changes the answer needs. A new provider or client API is one module with the four verbs
//! and one [`Direction`] arm. A Responses answer repeats its request's settings: the request's
//! translation keeps them ([`Translated::echo`]) and the response side is built with them
//! ([`ResponseTranslator::with_echo`]).
//!
//! The request's flow uses them: `flow::admit` translates requests, `flow::outbound` the
//! answers, and `flow::attempt` each attempt of a failover chain that reaches an Anthropic
//! provider.

use serde_json::{json, Map, Value};

use crate::error::HttpError;
use crate::eventstream;
use crate::names;
use crate::sse;
use responses_to_chat::ResponsesEcho;

pub mod anthropic_to_openai;
pub mod openai_to_anthropic;
pub mod openai_to_bedrock;
pub mod openai_to_gemini;
pub mod responses_to_chat;
#[cfg(test)]
mod tests;

/// The `anthropic-version` header value the translation targets.
pub const API_VERSION: &str = "2023-06-01";
/// The Messages API's path.
pub const MESSAGES_PATH: &str = "/v1/messages";

/// The path of the Responses API (after any prefix).
pub const RESPONSES_PATH: &str = "/v1/responses";

/// Largest single SSE event a stream translator holds (a tool call's input arrives in many
/// small deltas; a bigger event is cut and flagged by the parser), and largest event-stream
/// frame (a bigger one ends the stream with an error).
const MAX_EVENT_BYTES: usize = 1 << 20;

/// The content type of an AWS event stream (Bedrock's ConverseStream).
pub const EVENTSTREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";
/// The content type of an SSE stream.
pub const SSE_CONTENT_TYPE: &str = "text/event-stream";

/// A content type's media type, without its parameters (`text/event-stream; charset=utf-8`).
pub fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}
/// The exception kind a stream translator is given when the event stream cannot be read on.
pub const UNREADABLE_STREAM: &str = "unreadableEventStream";

/// A header change: set to the value, or removed (`None`).
pub type HeaderChange = (&'static str, Option<String>);

/// A translated request: its body and the request header changes it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub headers: Vec<HeaderChange>,
    pub body: Vec<u8>,
    /// For a Responses request: the settings its answer repeats, for the answer's translator
    /// ([`ResponseTranslator::with_echo`]). `None` for the other directions.
    pub echo: Option<ResponsesEcho>,
}

impl Translated {
    /// `body` with `headers`, and its `content-length`.
    fn new(body: Vec<u8>, mut headers: Vec<HeaderChange>) -> Translated {
        headers.push((names::CONTENT_LENGTH, Some(body.len().to_string())));
        Translated {
            headers,
            body,
            echo: None,
        }
    }
}

/// Where a translated request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The model name the provider receives.
    pub model: &'a str,
    /// `max_tokens` for a provider that requires it when the client set none.
    pub default_max_tokens: u64,
}

/// What a response translation knows of the answer it translates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseContext {
    /// The provider's status.
    pub status: u32,
    /// The Unix time (seconds) a translated OpenAI answer states as `created`.
    pub created: u64,
    /// The prompt's tokens as the gateway counted them (a translated Messages stream announces
    /// them in `message_start`, before the provider's own figures).
    pub counted_input: u64,
    /// A number unique to the answer, for the ids a translated answer must have when its
    /// provider gives none (`chatcmpl-{nonce:016x}`, tool call ids).
    pub nonce: u64,
    /// The model the request went to, for answers that do not name one (Bedrock's).
    pub model: String,
}

/// A direction's stream state machine: one SSE event of the provider's in, the client's SSE
/// text to send in its place out (possibly empty).
pub trait StreamTranslate: std::fmt::Debug {
    /// Translate one event: its `event:` name (empty when absent) and its `data:` (for an
    /// event stream: its `:event-type` and payload).
    fn event(&mut self, name: &str, data: &[u8]) -> String;
    /// Translate an exception an event stream reports: its `:exception-type` and payload, or
    /// [`UNREADABLE_STREAM`] and `{"message"}` when a frame cannot be read. Read as an event of
    /// that name unless the direction says otherwise.
    fn exception(&mut self, kind: &str, data: &[u8]) -> String {
        self.event(kind, data)
    }
    /// Whether the provider's stream has ended (its last event was translated).
    fn finished(&self) -> bool;
}

/// Which API the client speaks and which its provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// An OpenAI client, an Anthropic Messages provider.
    OpenaiToAnthropic,
    /// A Messages API client, an OpenAI-format provider.
    AnthropicToOpenai,
    /// A Responses API client, a provider that serves chat completions.
    ResponsesToChat,
    /// An OpenAI client, an AWS Bedrock (Converse) provider.
    OpenaiToBedrock,
    /// An OpenAI client, a Google Gemini provider (the Gemini API or Vertex AI).
    OpenaiToGemini(openai_to_gemini::Dialect),
}

impl Direction {
    /// The client's request body as the provider takes it.
    pub fn translate_request(
        self,
        body: &[u8],
        target: &Target<'_>,
    ) -> Result<Translated, HttpError> {
        match self {
            Direction::OpenaiToAnthropic => openai_to_anthropic::translate_request(body, target),
            Direction::AnthropicToOpenai => anthropic_to_openai::translate_request(body, target),
            Direction::ResponsesToChat => responses_to_chat::translate_request(body, target),
            Direction::OpenaiToBedrock => openai_to_bedrock::translate_request(body, target),
            Direction::OpenaiToGemini(dialect) => {
                openai_to_gemini::translate_request(body, target, dialect)
            }
        }
    }

    /// A whole JSON answer in the client's API; `None` when it cannot be read. `echo` is what
    /// a Responses request asked (only that direction reads it).
    pub fn translate_response(
        self,
        body: &[u8],
        context: &ResponseContext,
        echo: &ResponsesEcho,
    ) -> Option<Vec<u8>> {
        match self {
            Direction::OpenaiToAnthropic => openai_to_anthropic::translate_response(body, context),
            Direction::AnthropicToOpenai => anthropic_to_openai::translate_response(body, context),
            Direction::ResponsesToChat => {
                responses_to_chat::translate_response(body, context, echo)
            }
            Direction::OpenaiToBedrock => openai_to_bedrock::translate_response(body, context),
            Direction::OpenaiToGemini(_) => openai_to_gemini::translate_response(body, context),
        }
    }

    /// The status a client of this direction gets for a provider's `status`: Bedrock's that
    /// OpenAI's clients do not know (424 for a model error, 5xx but 500 and 503) become 502.
    pub fn client_status(self, status: u32) -> u32 {
        match self {
            Direction::OpenaiToBedrock if status >= 400 => {
                openai_to_bedrock::translate_error(status, &Value::Null).status
            }
            _ => status,
        }
    }

    /// The state machine for a streamed answer (`echo` as for
    /// [`Direction::translate_response`]).
    pub fn translate_stream(
        self,
        context: &ResponseContext,
        echo: ResponsesEcho,
    ) -> Box<dyn StreamTranslate> {
        match self {
            Direction::OpenaiToAnthropic => {
                Box::new(openai_to_anthropic::translate_stream(context))
            }
            Direction::AnthropicToOpenai => {
                Box::new(anthropic_to_openai::translate_stream(context))
            }
            Direction::ResponsesToChat => {
                Box::new(responses_to_chat::translate_stream(context, echo))
            }
            Direction::OpenaiToBedrock => Box::new(openai_to_bedrock::translate_stream(context)),
            Direction::OpenaiToGemini(_) => Box::new(openai_to_gemini::translate_stream(context)),
        }
    }
}

/// How a streamed answer is framed.
#[derive(Debug)]
enum Framing {
    Sse(sse::Parser),
    /// AWS event-stream frames; `None` once a frame could not be read (the rest is dropped).
    EventStream(Option<eventstream::Decoder>),
}

/// One provider answer translated into the client's API as it passes, chosen by its content
/// type: an SSE stream or an AWS event stream event by event (both become SSE), anything else
/// as one JSON body once it has all arrived.
#[derive(Debug)]
pub struct ResponseTranslator {
    direction: Direction,
    context: ResponseContext,
    /// What a Responses request asked, for a JSON answer (a stream's state machine holds it).
    echo: ResponsesEcho,
    /// For a streamed answer: its framing and the direction's state machine.
    stream: Option<(Framing, Box<dyn StreamTranslate>)>,
}

impl ResponseTranslator {
    pub fn new(
        direction: Direction,
        content_type: &str,
        context: ResponseContext,
    ) -> ResponseTranslator {
        ResponseTranslator::with_echo(direction, content_type, context, ResponsesEcho::default())
    }

    /// [`ResponseTranslator::new`] for the answer to a Responses request: `echo` is what the
    /// request asked ([`Translated::echo`]), which the `response` object repeats.
    pub fn with_echo(
        direction: Direction,
        content_type: &str,
        context: ResponseContext,
        mut echo: ResponsesEcho,
    ) -> ResponseTranslator {
        let ct = media_type(content_type);
        let framing = if ct.eq_ignore_ascii_case(SSE_CONTENT_TYPE) {
            Some(Framing::Sse(sse::Parser::new(MAX_EVENT_BYTES)))
        } else if ct.eq_ignore_ascii_case(EVENTSTREAM_CONTENT_TYPE) {
            Some(Framing::EventStream(Some(eventstream::Decoder::new(
                MAX_EVENT_BYTES,
            ))))
        } else {
            None
        };
        let stream = framing.map(|f| {
            (
                f,
                direction.translate_stream(&context, std::mem::take(&mut echo)),
            )
        });
        ResponseTranslator {
            direction,
            context,
            echo,
            stream,
        }
    }

    /// Whether the whole body must be held before it can be translated.
    pub fn buffers(&self) -> bool {
        self.stream.is_none()
    }

    /// The response header changes a translated answer needs: its length changes, and an
    /// event stream becomes SSE.
    pub fn headers(&self) -> Vec<HeaderChange> {
        let mut h = vec![(names::CONTENT_LENGTH, None)];
        if let Some(ct) = self.output_content_type() {
            h.push((names::CONTENT_TYPE, Some(ct.to_string())));
        }
        h
    }

    /// The content type of what the translator emits, when it differs from the provider's
    /// (an event stream becomes `text/event-stream`).
    pub fn output_content_type(&self) -> Option<&'static str> {
        match &self.stream {
            Some((Framing::EventStream(_), _)) => Some(SSE_CONTENT_TYPE),
            _ => None,
        }
    }

    /// Translate the next piece of the body (for JSON: the whole body, once). What cannot be
    /// read as JSON passes unchanged.
    pub fn chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some((framing, stream)) = self.stream.as_mut() else {
            return self
                .direction
                .translate_response(chunk, &self.context, &self.echo)
                .unwrap_or_else(|| chunk.to_vec());
        };
        let mut out = String::new();
        match framing {
            Framing::Sse(parser) => parser.feed(chunk, |_, e| {
                out.push_str(&stream.event(&String::from_utf8_lossy(e.name), e.data));
            }),
            Framing::EventStream(decoder) => {
                let Some(d) = decoder.as_mut() else {
                    return Vec::new();
                };
                let fed = d.feed(chunk, |m| {
                    let text = if m.is_exception() {
                        stream.exception(&m.event_type, &m.payload)
                    } else {
                        stream.event(&m.event_type, &m.payload)
                    };
                    out.push_str(&text);
                });
                if let Err(e) = fed {
                    *decoder = None;
                    let why = json!({"message": format!("The provider's answer could not be read: {e}.")});
                    out.push_str(&stream.exception(UNREADABLE_STREAM, why.to_string().as_bytes()));
                }
            }
        }
        out.into_bytes()
    }
}

/// The text of an OpenAI or Anthropic `content` (a string, or the text parts of an array, one
/// per line).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An Anthropic `tool_use` block as an OpenAI tool call (arguments as JSON text).
fn openai_tool_call(b: &Value) -> Value {
    json!({
        "id": b.get("id").cloned().unwrap_or_default(),
        "type": "function",
        "function": {
            "name": b.get("name").cloned().unwrap_or_default(),
            "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
        },
    })
}

/// OpenAI usage from an Anthropic usage object: `input_tokens + cache_read + cache_creation`
/// is `prompt_tokens`, cache reads `prompt_tokens_details.cached_tokens`, `output_tokens`
/// `completion_tokens`.
pub fn usage_to_openai(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(crate::wire::count).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let written = n("cache_creation_input_tokens");
    // A provider's figures may be anything a u64 holds: sums saturate rather than wrap.
    let prompt = n("input_tokens")
        .saturating_add(cached)
        .saturating_add(written);
    let completion = n("output_tokens");
    let mut details = Map::new();
    details.insert("cached_tokens".into(), cached.into());
    if written > 0 {
        // Not an OpenAI field: cache writes are priced apart (1.25 × input at Anthropic).
        details.insert("cache_creation_tokens".into(), written.into());
    }
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": details,
    })
}

/// Anthropic usage from an OpenAI usage object (the inverse of [`usage_to_openai`]).
pub fn usage_to_anthropic(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(crate::wire::count).unwrap_or(0);
    let detail = |k: &str| {
        u.get("prompt_tokens_details")
            .and_then(|d| d.get(k))
            .and_then(crate::wire::count)
            .unwrap_or(0)
    };
    let cached = detail("cached_tokens");
    let written = detail("cache_creation_tokens");
    json!({
        "input_tokens": n("prompt_tokens").saturating_sub(cached).saturating_sub(written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": n("completion_tokens"),
    })
}
