//! Judging a non-streamed response: is it whole enough to store, does it call tools.

use super::{empty, Completion};
use crate::meter::Usage;

/// What the cache needs to know of a non-streamed `chat.completion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// There is at least one choice and every choice has a finish reason.
    pub complete: bool,
    /// Some choice calls tools (`tool_calls`, or finish reason `tool_calls`/`function_call`).
    pub tool_calls: bool,
    pub usage: Option<Usage>,
}

/// Summarize a non-streamed response body; None when it is not a `chat.completion` (an error
/// object, say). A completion may be summarized and still be refused by [`to_sse`] (logprobs,
/// unknown message fields): a streamed request cannot be served from it.
pub fn summary(completion: &[u8]) -> Option<Summary> {
    let c: Completion = serde_json::from_slice(completion).ok()?;
    if c.object != "chat.completion" {
        return None;
    }
    let complete = !c.choices.is_empty()
        && c.choices
            .iter()
            .all(|ch| ch.finish_reason.as_deref().is_some_and(|r| !r.is_empty()));
    let tool_calls = c.choices.iter().any(|ch| {
        ch.message
            .tool_calls
            .as_ref()
            .is_some_and(|t| !t.is_empty())
            || ch
                .message
                .other
                .get("function_call")
                .is_some_and(|f| !empty(f))
            || matches!(
                ch.finish_reason.as_deref(),
                Some("tool_calls" | "function_call")
            )
    });
    let usage = c.usage.and_then(|u| serde_json::from_str(u.get()).ok());
    Some(Summary {
        complete,
        tool_calls,
        usage,
    })
}
