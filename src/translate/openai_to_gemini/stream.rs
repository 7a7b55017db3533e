//! A Gemini SSE stream (`streamGenerateContent?alt=sse`: one `GenerateContentResponse` per
//! `data:` event, no end marker) as OpenAI `chat.completion.chunk` events.

use serde_json::{json, Value};

use super::response::{logprobs, response_id, translate_error, Parts};
use super::{error_of, finish_reason, Counts};
use crate::translate::{ResponseContext, StreamTranslate};

/// Candidates beyond this index are not translated (Gemini makes at most 8).
const MAX_CANDIDATES: usize = 64;

/// Translates a Gemini stream one event at a time. Per candidate it keeps whether its role chunk
/// went out, whether it finished and how many tool calls it made; for the answer, its id, model
/// and the last usage figures. When every candidate begun has finished (or the prompt was
/// blocked), the usage chunk and `[DONE]` follow and the rest of the stream is ignored.
#[derive(Debug)]
pub struct Stream {
    id: Option<String>,
    model: Value,
    created: u64,
    nonce: u64,
    /// Bit `i`: candidate `i` had its role chunk.
    started: u64,
    /// Bit `i`: candidate `i` finished.
    finished: u64,
    /// Tool calls made by each candidate.
    calls: [u64; MAX_CANDIDATES],
    counts: Counts,
    saw_usage: bool,
    done: bool,
}

impl StreamTranslate for Stream {
    /// Gemini's events have no names: only the data counts.
    fn event(&mut self, _name: &str, data: &[u8]) -> String {
        if self.done {
            return String::new();
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return String::new();
        };
        if let Some(e) = error_of(&v) {
            self.done = true;
            let body = translate_error(e, 502).body();
            return format!("data: {}\n\n", String::from_utf8_lossy(&body));
        }
        self.answer(&v)
    }

    /// Whether the stream ended: every candidate finished, or an error came.
    fn finished(&self) -> bool {
        self.done
    }
}

impl Stream {
    pub fn new(context: &ResponseContext) -> Stream {
        Stream {
            id: None,
            model: Value::Null,
            created: context.created,
            nonce: context.nonce,
            started: 0,
            finished: 0,
            calls: [0; MAX_CANDIDATES],
            counts: Counts::default(),
            saw_usage: false,
            done: false,
        }
    }

    /// One `GenerateContentResponse` event.
    fn answer(&mut self, v: &Value) -> String {
        if self.id.is_none() {
            self.id = Some(response_id(v, self.nonce));
        }
        if let Some(m) = v.get("modelVersion").filter(|m| m.is_string()) {
            self.model = m.clone();
        }
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            self.counts.read(u);
            self.saw_usage = true;
        }
        let mut out = String::new();
        let candidates = v.get("candidates").and_then(Value::as_array);
        for (position, c) in candidates.into_iter().flatten().enumerate() {
            self.candidate(c, position as u64, &mut out);
        }
        let blocked = v
            .pointer("/promptFeedback/blockReason")
            .is_some_and(|r| !r.is_null());
        if candidates.is_none_or(Vec::is_empty) && blocked {
            self.start(0, &mut out);
            out.push_str(&self.chunk(0, json!({}), "content_filter".into(), None));
            self.finished |= 1;
        }
        if self.started != 0 && self.finished == self.started {
            self.close(&mut out);
        }
        out
    }

    /// One candidate of an event: its thoughts, text and calls as deltas, then its finish.
    fn candidate(&mut self, c: &Value, position: u64, out: &mut String) {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(position);
        let Some(slot) = usize::try_from(index).ok().filter(|i| *i < MAX_CANDIDATES) else {
            return;
        };
        let bit = 1u64 << slot;
        if self.finished & bit != 0 {
            return;
        }
        self.start(slot, out);
        let made = self.calls.get(slot).copied().unwrap_or(0);
        let parts = Parts::read(
            c.pointer("/content/parts").unwrap_or(&Value::Null),
            self.nonce,
            index,
            made,
        );
        if !parts.reasoning.is_empty() {
            out.push_str(&self.chunk(
                index,
                json!({"reasoning_content": parts.reasoning}),
                Value::Null,
                None,
            ));
        }
        if !parts.text.is_empty() {
            let lp = c.get("logprobsResult").map(logprobs);
            out.push_str(&self.chunk(index, json!({"content": parts.text}), Value::Null, lp));
        }
        if !parts.calls.is_empty() {
            let deltas: Vec<Value> = parts
                .calls
                .into_iter()
                .zip(made..)
                .map(|(mut call, n)| {
                    if let Some(o) = call.as_object_mut() {
                        o.insert("index".into(), n.into());
                    }
                    call
                })
                .collect();
            let total = made + deltas.len() as u64;
            if let Some(count) = self.calls.get_mut(slot) {
                *count = total;
            }
            out.push_str(&self.chunk(index, json!({"tool_calls": deltas}), Value::Null, None));
        }
        let reason = c
            .get("finishReason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty());
        if let Some(reason) = reason {
            let called = self.calls.get(slot).is_some_and(|n| *n > 0);
            out.push_str(&self.chunk(index, json!({}), finish_reason(reason, called).into(), None));
            self.finished |= bit;
        }
    }

    /// The role chunk, once per candidate (`slot` < [`MAX_CANDIDATES`]).
    fn start(&mut self, slot: usize, out: &mut String) {
        let bit = 1u64 << slot;
        if self.started & bit == 0 {
            self.started |= bit;
            let role = json!({"role": "assistant", "content": ""});
            out.push_str(&self.chunk(slot as u64, role, Value::Null, None));
        }
    }

    /// The usage chunk (when Gemini gave usage) and `[DONE]`.
    fn close(&mut self, out: &mut String) {
        self.done = true;
        if self.saw_usage {
            let c = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.counts.openai(),
            });
            out.push_str(&format!("data: {c}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
    }

    /// One `chat.completion.chunk` event for choice `index`.
    fn chunk(&self, index: u64, delta: Value, finish: Value, logprobs: Option<Value>) -> String {
        let mut choice = json!({"index": index, "delta": delta, "finish_reason": finish});
        if let (Some(lp), Some(o)) = (logprobs, choice.as_object_mut()) {
            o.insert("logprobs".into(), lp);
        }
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        format!("data: {c}\n\n")
    }
}
