//! The Responses API's answers, read by the meter: a JSON `response` object, or its stream of
//! `response.*` events.
//!
//! - JSON: `usage` (`input_tokens`, `input_tokens_details.cached_tokens`, `output_tokens`,
//!   `output_tokens_details.reasoning_tokens`, `total_tokens`), `model`, `id`; `status`
//!   `completed` or `incomplete` is a complete answer (an `incomplete` one stopped at
//!   `max_output_tokens` or a content filter, and is billed all the same). Without usage, the
//!   completion is counted from the output items' texts.
//! - SSE: `response.created` (and every event carrying the `response`) gives `model` and `id`;
//!   the generated deltas (`response.output_text.delta`, `response.refusal.delta`,
//!   `response.function_call_arguments.delta`, `response.reasoning_text.delta`,
//!   `response.custom_tool_call_input.delta`, and a tool call's name in
//!   `response.output_item.added`) mark the first token and are counted for the completion
//!   estimate; the terminal event (`response.completed`, `response.incomplete`,
//!   `response.failed`) gives `response.usage` and ends the answer, `response.failed` as an
//!   error; an `error` event is an error that ends it too. There is no `[DONE]`.
//!
//! Nothing is held or cut: every chunk passes as it came.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{bounded_id, CompletionDetails, Learned, PromptDetails, Usage};
use crate::sse;
use crate::tokens::Encoding;

/// The Responses API's `usage` object.
#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    total_tokens: Option<u64>,
    /// `cached_tokens` (and, where a translation carries Anthropic's cache writes,
    /// `cache_creation_tokens`), named as in chat's `prompt_tokens_details`.
    #[serde(default)]
    input_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    output_tokens_details: Option<CompletionDetails>,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        Usage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: u.input_tokens_details,
            completion_tokens_details: u.output_tokens_details,
        }
    }
}

/// A `response` object's members the meter reads; its `output` stays raw, decoded only when
/// the completion must be estimated from it.
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default, borrow)]
    output: Option<Vec<&'a RawValue>>,
}

/// One stream event's members the meter reads.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    response: Option<Head<'a>>,
    #[serde(default, borrow)]
    item: Option<OutputItem<'a>>,
}

/// The `response` an event carries: what is read of it in a stream.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

/// An output item's generated texts.
#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Vec<OutputPart<'a>>>,
}

/// A part of a message's or a reasoning item's content.
#[derive(Deserialize)]
struct OutputPart<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
}

impl OutputItem<'_> {
    /// The item's generated texts, fed to `f` (what chat's meter counts of a message: content,
    /// refusal, reasoning, tool calls' names and arguments).
    fn generated(&self, f: &mut dyn FnMut(&str)) {
        match self.kind.as_deref() {
            Some("function_call") => {
                self.name.iter().chain(&self.arguments).for_each(|s| f(s));
            }
            Some("custom_tool_call") => {
                self.name.iter().chain(&self.input).for_each(|s| f(s));
            }
            Some("message" | "reasoning") => {
                for p in self.content.iter().flatten() {
                    match (p.kind.as_deref(), &p.text, &p.refusal) {
                        (Some("output_text" | "reasoning_text"), Some(t), _) => f(t),
                        (Some("refusal"), _, Some(r)) => f(r),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// The name of a tool call as it starts in a stream (its arguments come as deltas).
    fn call_name(&self) -> Option<&str> {
        match self.kind.as_deref() {
            Some("function_call" | "custom_tool_call") => self.name.as_deref(),
            _ => None,
        }
    }
}

/// Add the tokens of `text` to the completion estimate.
fn estimate(learned: &mut Learned, encoding: Option<Encoding>, text: &str) {
    if let Some(e) = encoding {
        let t = &mut learned.completion_estimate.tokens;
        *t = t.saturating_add(e.count(text));
    }
}

/// The model and id, where not known yet.
fn identify(learned: &mut Learned, id: Option<&str>, model: Option<&str>) {
    if learned.model.is_none() {
        learned.model = model.map(str::to_string);
    }
    if learned.id.is_none() {
        learned.id = id.map(bounded_id);
    }
}

/// Learn from one event of a Responses API stream.
pub(super) fn learn_event(
    learned: &mut Learned,
    ev: sse::Event<'_>,
    encoding: Option<Encoding>,
    now_ms: u64,
) {
    if ev.truncated {
        return;
    }
    if ev.name == b"error" {
        learned.stream_error = true;
        learned.complete = true;
        return;
    }
    let Ok(event) = serde_json::from_slice::<Event>(ev.data) else {
        return;
    };
    if let Some(r) = &event.response {
        identify(learned, r.id.as_deref(), r.model.as_deref());
    }
    let generated = match event.kind.as_deref().unwrap_or_default() {
        "response.completed" | "response.incomplete" | "response.failed" => {
            if let Some(u) = event.response.and_then(|r| r.usage) {
                learned.usage = Some(u.into());
            }
            learned.complete = true;
            learned.stream_error |= event.kind.as_deref() == Some("response.failed");
            None
        }
        "error" => {
            learned.stream_error = true;
            learned.complete = true;
            None
        }
        "response.output_text.delta"
        | "response.refusal.delta"
        | "response.function_call_arguments.delta"
        | "response.reasoning_text.delta"
        | "response.custom_tool_call_input.delta" => event.delta.as_deref(),
        "response.output_item.added" => event.item.as_ref().and_then(OutputItem::call_name),
        _ => None,
    };
    if let Some(text) = generated.filter(|t| !t.is_empty()) {
        estimate(learned, encoding, text);
        if learned.first_token_ms.is_none() {
            learned.first_token_ms = Some(now_ms);
        }
    }
}

/// Learn from a whole Responses API JSON body (a `response` object, or an error).
pub(super) fn learn_json(learned: &mut Learned, buf: &[u8], encoding: Option<Encoding>) {
    let Ok(body) = serde_json::from_slice::<Response>(buf) else {
        return;
    };
    learned.complete = match body.status.as_deref() {
        Some(s) => matches!(s, "completed" | "incomplete"),
        None => body.error.is_none(),
    };
    learned.usage = body.usage.map(Usage::from);
    learned.model = body.model.map(Cow::into_owned);
    learned.id = body.id.as_deref().map(bounded_id);
    if learned.usage.is_none() {
        for raw in body.output.iter().flatten() {
            // An item of a shape not read here is skipped, not the body.
            if let Ok(item) = serde_json::from_str::<OutputItem>(raw.get()) {
                item.generated(&mut |s| estimate(learned, encoding, s));
            }
        }
    }
}

#[cfg(test)]
mod tests;
