//! Chat completions, streamed and not, turned into each other for the response cache.
//!
//! One cache entry, a `chat.completion` JSON object, serves both kinds of request. [`Assembler`]
//! reads an OpenAI `chat.completion.chunk` SSE stream as it passes (in any chunk boundaries) and
//! builds the completion a non-streamed request would have returned; [`to_sse`] replays a stored
//! completion as a chunk stream; [`summary`] tells whether a non-streamed response is whole
//! enough to store. Where a conversion could not carry something faithfully it refuses rather
//! than guess: an unfinished or failed stream, logprobs, and delta or message fields it does not
//! know (legacy `function_call`, `audio`, `reasoning_content`, non-function tool calls) unless
//! they are empty. The assembler keeps at most `max_bytes` of completion (plus one SSE event):
//! past that it drops what it holds and only remembers that the stream cannot be stored.
//!
//! This module holds the stored form, a `chat.completion`, written by the assembler
//! (`assemble`) and read by `to_sse` (`replay`) and `summary` (`summary`), leniently: a
//! provider's own non-streamed response is read with it too.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod assemble;
mod replay;
mod summary;

pub use assemble::Assembler;
pub use replay::to_sse;
pub use summary::{summary, Summary};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    object: String,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<String>,
    choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usage: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<u32>,
    message: Message,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCall>>,
    /// Fields this module does not carry (`annotations`, `audio`, `function_call`, ...).
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ToolCall {
    /// Some providers number the calls of a non-streamed message too; the position says it.
    #[serde(default, skip_serializing, rename = "index")]
    _index: Option<IgnoredAny>,
    #[serde(default)]
    id: String,
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    function: FunctionCall,
    #[serde(flatten)]
    other: Map<String, Value>,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FunctionCall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

/// No information: null, an empty string, array or object, or an object of such.
fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(empty),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

fn all_empty(m: &Map<String, Value>) -> bool {
    m.values().all(empty)
}

#[cfg(test)]
mod tests;
