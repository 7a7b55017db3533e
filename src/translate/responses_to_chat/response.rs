//! A chat completion as a Responses `response` object, and the pieces of one the stream
//! shares.
//!
//! | chat completion | `response` |
//! |---|---|
//! | `id` `chatcmpl-X` | `id` `resp_X`; items `msg_X_<n>`, `fc_X_<n>` (`n`: the output index) |
//! | `created` | `created_at` |
//! | `model` | `model` |
//! | `message.content` | a `message` item's `output_text` part (`annotations: []`) |
//! | `message.refusal` | the `message` item's `refusal` part |
//! | `message.tool_calls[]` | `function_call` items (`call_id` = the call's `id`) |
//! | `finish_reason` `length` | `status: incomplete`, `incomplete_details.reason: max_output_tokens` |
//! | `finish_reason` `content_filter` | `status: incomplete`, `incomplete_details.reason: content_filter` |
//! | any other `finish_reason` | `status: completed` |
//! | `usage` | `usage`, as [`usage_to_responses`] says |
//!
//! The request's settings come from its [`ResponsesEcho`]; `store` is `false` (nothing is
//! stored), `background` `false`, `truncation` `disabled`, `previous_response_id` `null`.

use serde_json::{json, Map, Value};

use super::{error_body, id_suffix, usage_to_responses, ResponsesEcho};
use crate::translate::ResponseContext;

/// What a `response` object says of the answer itself.
#[derive(Debug, Clone, Default)]
pub(super) struct Head {
    /// What the ids are made of ([`id_suffix`]).
    pub(super) suffix: String,
    pub(super) model: Value,
    pub(super) created_at: u64,
}

impl Head {
    /// The head of the answer a chat completion (or its first chunk) starts; `created` when the
    /// chat answer states no time.
    pub(super) fn of(chat: &Value, created: u64) -> Head {
        let created_at = chat
            .get("created")
            .and_then(Value::as_u64)
            .unwrap_or(created);
        Head {
            suffix: id_suffix(chat.get("id").and_then(Value::as_str), created_at),
            model: chat.get("model").cloned().unwrap_or_else(|| "".into()),
            created_at,
        }
    }

    /// The id of the output item at `n`.
    pub(super) fn item_id(&self, n: usize, call: bool) -> String {
        let prefix = if call { "fc" } else { "msg" };
        format!("{prefix}_{}_{n}", self.suffix)
    }
}

/// The status and `incomplete_details` a chat `finish_reason` ends a response with.
pub(super) fn outcome(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// An `output_text` part, or a `refusal` part.
pub(super) fn part(refusal: bool, text: &str) -> Value {
    if refusal {
        json!({"type": "refusal", "refusal": text})
    } else {
        json!({"type": "output_text", "text": text, "annotations": []})
    }
}

/// An assistant `message` output item.
pub(super) fn message_item(id: String, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A `function_call` output item.
pub(super) fn call_item(id: String, status: &str, call_id: &str, name: &str, args: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
           "name": name, "arguments": args})
}

/// A `response` object of `status` with `output` and `usage`; no error and no
/// `incomplete_details` (the caller sets them when there are).
pub(super) fn response_object(
    echo: &ResponsesEcho,
    head: &Head,
    status: &str,
    output: Vec<Value>,
    usage: Value,
) -> Map<String, Value> {
    let mut r = echo.fields();
    let fields = [
        ("id", format!("resp_{}", head.suffix).into()),
        ("object", "response".into()),
        ("created_at", head.created_at.into()),
        ("status", status.into()),
        ("background", false.into()),
        ("error", Value::Null),
        ("incomplete_details", Value::Null),
        ("max_tool_calls", Value::Null),
        ("model", head.model.clone()),
        ("output", Value::Array(output)),
        ("previous_response_id", Value::Null),
        ("store", false.into()),
        ("truncation", "disabled".into()),
        ("usage", usage),
    ];
    for (k, v) in fields {
        r.insert(k.into(), v);
    }
    r
}

/// A tool call's arguments as text (a server that sends them as a JSON object gets its text).
pub(super) fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Translate a chat completions answer (a `chat.completion`, or an error, whatever the status)
/// into a Responses `response` object for the request `echo` was made from, or OpenAI's error
/// shape; `None` when it is not JSON.
pub fn translate_response(
    body: &[u8],
    context: &ResponseContext,
    echo: &ResponsesEcho,
) -> Option<Vec<u8>> {
    let r: Value = serde_json::from_slice(body).ok()?;
    if !(200..300).contains(&context.status) || r.get("error").is_some_and(|e| !e.is_null()) {
        let kind = if (400..500).contains(&context.status) {
            "invalid_request_error"
        } else {
            "server_error"
        };
        return serde_json::to_vec(&error_body(&r, kind)).ok();
    }
    let head = Head::of(&r, context.created);
    let choice = r
        .get("choices")
        .and_then(|c| c.get(0))
        .unwrap_or(&Value::Null);
    let (status, incomplete) = outcome(choice.get("finish_reason").and_then(Value::as_str));
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let text = |k: &str| msg.get(k).and_then(Value::as_str).filter(|t| !t.is_empty());
    let parts: Vec<Value> = [(false, text("content")), (true, text("refusal"))]
        .into_iter()
        .filter_map(|(refusal, t)| t.map(|t| part(refusal, t)))
        .collect();
    let mut output = Vec::new();
    if !parts.is_empty() {
        let item_status = if status == "incomplete" {
            "incomplete"
        } else {
            "completed"
        };
        output.push(message_item(head.item_id(0, false), item_status, parts));
    }
    for c in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = c.get("function").unwrap_or(&Value::Null);
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let args = arguments_text(f.get("arguments"));
        let id = head.item_id(output.len(), true);
        output.push(call_item(
            id,
            "completed",
            &field(c, "id"),
            &field(f, "name"),
            &args,
        ));
    }
    let usage = r
        .get("usage")
        .filter(|u| u.is_object())
        .map_or(Value::Null, usage_to_responses);
    let mut out = response_object(echo, &head, status, output, usage);
    out.insert("incomplete_details".into(), incomplete);
    serde_json::to_vec(&Value::Object(out)).ok()
}
