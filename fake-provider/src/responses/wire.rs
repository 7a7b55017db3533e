//! Responses API output: the response object, its output items, usage and the stream events,
//! serialised in the field order OpenAI sends them.

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

use super::Echo;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

/// An `output_text` content part.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OutputText<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub annotations: [(); 0],
    pub logprobs: [(); 0],
    pub text: &'a str,
}

impl<'a> OutputText<'a> {
    pub fn new(text: &'a str) -> Self {
        OutputText {
            kind: "output_text",
            annotations: [],
            logprobs: [],
            text,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageItem<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub content: Vec<OutputText<'a>>,
    pub role: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionCallItem<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub arguments: &'a str,
    pub call_id: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasoningItem<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub summary: [(); 0],
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum OutputItem<'a> {
    Reasoning(ReasoningItem<'a>),
    Message(MessageItem<'a>),
    FunctionCall(FunctionCallItem<'a>),
}

/// `error` of a failed response.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ErrorObject<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

/// A response object: what this turn produced, and the request fields it echoes.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub status: &'static str,
    pub error: Option<ErrorObject<'a>>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub model: &'a str,
    pub output: &'a [OutputItem<'a>],
    pub service_tier: &'a str,
    pub usage: Option<&'a Usage>,
    pub echo: &'a Echo,
}

impl Serialize for ResponseView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let e = self.echo;
        let mut s = ser.serialize_struct("Response", 28)?;
        s.serialize_field("id", self.id)?;
        s.serialize_field("object", "response")?;
        s.serialize_field("created_at", &self.created_at)?;
        s.serialize_field("status", self.status)?;
        s.serialize_field("background", &false)?;
        s.serialize_field("error", &self.error)?;
        s.serialize_field("incomplete_details", &self.incomplete_details)?;
        s.serialize_field("instructions", &e.instructions)?;
        s.serialize_field("max_output_tokens", &e.max_output_tokens)?;
        s.serialize_field("max_tool_calls", &e.max_tool_calls)?;
        s.serialize_field("model", self.model)?;
        s.serialize_field("output", self.output)?;
        s.serialize_field("parallel_tool_calls", &e.parallel_tool_calls)?;
        s.serialize_field("previous_response_id", &e.previous_response_id)?;
        s.serialize_field("prompt_cache_key", &e.prompt_cache_key)?;
        s.serialize_field("reasoning", &e.reasoning)?;
        s.serialize_field("safety_identifier", &e.safety_identifier)?;
        s.serialize_field("service_tier", self.service_tier)?;
        s.serialize_field("store", &e.store)?;
        s.serialize_field("temperature", &e.temperature)?;
        s.serialize_field("text", &e.text)?;
        s.serialize_field("tool_choice", &e.tool_choice)?;
        s.serialize_field("tools", &e.tools)?;
        s.serialize_field("top_logprobs", &e.top_logprobs)?;
        s.serialize_field("top_p", &e.top_p)?;
        s.serialize_field("truncation", &e.truncation)?;
        s.serialize_field("usage", &self.usage)?;
        s.serialize_field("user", &e.user)?;
        s.serialize_field("metadata", &e.metadata)?;
        s.end()
    }
}

// ------------------------------------------------------------------- events

/// One stream event: its `type` (also the SSE event name), its `sequence_number`, its fields.
#[derive(Debug, Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: usize,
    #[serde(flatten)]
    body: T,
}

/// The SSE frames of a stream, numbered from `first`.
#[derive(Debug, Default)]
pub struct Frames {
    first: usize,
    pub frames: Vec<String>,
}

impl Frames {
    pub fn starting_at(first: usize) -> Self {
        Frames {
            first,
            frames: Vec::new(),
        }
    }

    /// The sequence number of the next event.
    pub fn next_seq(&self) -> usize {
        self.first + self.frames.len()
    }

    /// Adds `event: KIND` with `data: {"type": KIND, "sequence_number": N, ...body}`.
    pub fn push<T: Serialize>(&mut self, kind: &str, body: T) {
        let event = Event {
            kind,
            sequence_number: self.next_seq(),
            body,
        };
        let data = serde_json::to_string(&event).unwrap_or_default();
        self.frames.push(format!("event: {kind}\ndata: {data}\n\n"));
    }
}

#[derive(Debug, Serialize)]
pub struct ResponseBody<'a> {
    pub response: ResponseView<'a>,
}

#[derive(Debug, Serialize)]
pub struct ItemBody<'a> {
    pub output_index: usize,
    pub item: &'a OutputItem<'a>,
}

#[derive(Debug, Serialize)]
pub struct PartBody<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub part: OutputText<'a>,
}

#[derive(Debug, Serialize)]
pub struct TextDelta<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub delta: &'a str,
    pub logprobs: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obfuscation: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TextDone<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub text: &'a str,
    pub logprobs: [(); 0],
}

#[derive(Debug, Serialize)]
pub struct ArgumentsDelta<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obfuscation: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ArgumentsDone<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub arguments: &'a str,
}

/// The in-band `error` event: `{"type":"error","sequence_number":N,"error":{...}}`, as
/// OpenAI sends it.
#[derive(Debug, Serialize)]
pub struct ErrorEventBody<'a> {
    pub error: StreamError<'a>,
}

#[derive(Debug, Serialize)]
pub struct StreamError<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub param: Option<&'a str>,
}
