//! ConverseStream's events as OpenAI `chat.completion.chunk` SSE events.
//!
//! `messageStart` opens the answer (the role chunk); a `contentBlockStart` with `toolUse`
//! starts a tool call (its index, id and name, arguments empty), whose input then arrives as
//! `contentBlockDelta` `toolUse.input` text, sent as arguments deltas; text deltas are
//! `content`, reasoning text `reasoning_content`; `messageStop` is the finish chunk; `metadata`
//! carries the usage, sent as the usage chunk, then `data: [DONE]`. An exception the stream
//! reports (or a stream that cannot be read) is an OpenAI error event, then `data: [DONE]`.
//! The state is a few ids and counters, whatever the stream's length.

use serde_json::{json, Value};

use super::{bedrock_usage, exception_error, finish_reason};
use crate::translate::{usage_to_openai, StreamTranslate};

/// Translates one ConverseStream answer.
#[derive(Debug, Default)]
pub struct Stream {
    id: String,
    created: u64,
    /// The model the request went to (Converse does not name it).
    model: String,
    /// The open `toolUse` block: its `contentBlockIndex` and its OpenAI tool call index.
    tool_block: Option<(u64, u64)>,
    tools_seen: u64,
    done: bool,
}

impl StreamTranslate for Stream {
    fn event(&mut self, name: &str, data: &[u8]) -> String {
        if self.done {
            return String::new();
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return String::new();
        };
        match name {
            "messageStart" => self.chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            "contentBlockStart" => self.block_start(&v),
            "contentBlockDelta" => self.block_delta(&v),
            "contentBlockStop" => {
                self.tool_block = None;
                String::new()
            }
            "messageStop" => {
                let stop = v.get("stopReason").and_then(Value::as_str);
                self.chunk(json!({}), finish_reason(stop))
            }
            "metadata" => self.metadata(&v),
            _ => String::new(), // event types added later
        }
    }

    fn exception(&mut self, kind: &str, data: &[u8]) -> String {
        if self.done {
            return String::new();
        }
        self.done = true;
        let v = serde_json::from_slice::<Value>(data).unwrap_or(Value::Null);
        let e = exception_error(kind, &v);
        format!(
            "data: {}\n\ndata: [DONE]\n\n",
            String::from_utf8_lossy(&e.body())
        )
    }

    /// Whether the usage (`metadata`) or an exception arrived: nothing follows either.
    fn finished(&self) -> bool {
        self.done
    }
}

impl Stream {
    /// A stream whose chunks have this id and `created`.
    pub fn new(id: String, created: u64, model: String) -> Stream {
        Stream {
            id,
            created,
            model,
            ..Stream::default()
        }
    }

    /// One `chat.completion.chunk` event, naming the model the request went to.
    fn chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {c}\n\n")
    }

    fn block_start(&mut self, v: &Value) -> String {
        let Some(tool) = v.get("start").and_then(|s| s.get("toolUse")) else {
            return String::new();
        };
        let index = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let call = self.tools_seen;
        self.tools_seen = self.tools_seen.saturating_add(1);
        self.tool_block = Some((index, call));
        self.chunk(
            json!({"tool_calls": [{
                "index": call,
                "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": tool.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
            }]}),
            Value::Null,
        )
    }

    fn block_delta(&mut self, v: &Value) -> String {
        let d = v.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = d.get("text").and_then(Value::as_str) {
            return self.chunk(json!({"content": t}), Value::Null);
        }
        if let Some(input) = d.get("toolUse").and_then(|t| t.get("input")) {
            let index = v
                .get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let Some((_, call)) = self.tool_block.filter(|(b, _)| *b == index) else {
                return String::new();
            };
            return self.chunk(
                json!({"tool_calls": [{"index": call, "function": {"arguments": input}}]}),
                Value::Null,
            );
        }
        // Reasoning text; its signature and redacted reasoning have no chat counterpart.
        match d
            .get("reasoningContent")
            .and_then(|r| r.get("text"))
            .and_then(Value::as_str)
        {
            Some(t) => self.chunk(json!({"reasoning_content": t}), Value::Null),
            None => String::new(),
        }
    }

    /// The usage chunk (always: the meter reads it, and strips it for a client that did not
    /// ask), then the end of the stream.
    fn metadata(&mut self, v: &Value) -> String {
        self.done = true;
        let usage = usage_to_openai(&bedrock_usage(v.get("usage").unwrap_or(&Value::Null)));
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        });
        format!("data: {c}\n\ndata: [DONE]\n\n")
    }
}
