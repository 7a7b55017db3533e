//! A Responses request as a chat completions request.
//!
//! | Responses | chat completions |
//! |---|---|
//! | `instructions` | a leading `system` message |
//! | `input` string | one `user` message |
//! | message item, role `user` / `assistant` / `system` / `developer` | a message, `developer` as `system` |
//! | `input_text`, assistant `output_text` | `text` (assistant and system content as one string) |
//! | `input_image` with `image_url` (and `detail`) | `image_url` |
//! | `input_file` with `file_data` (and `filename`) | `file` |
//! | `input_audio` | `input_audio` |
//! | assistant `refusal` part | the assistant message's `refusal` |
//! | consecutive `function_call` items | one assistant message's `tool_calls` (`id` = `call_id`) |
//! | `function_call_output` | a `tool` message (`tool_call_id` = `call_id`, text content) |
//! | `reasoning` item | dropped: the model's own state, which chat takes no input for |
//! | function `tools` | `{type:"function", function:{name, description, parameters, strict}}` |
//! | `tool_choice` | the same words; `{type:"function", name}` and `allowed_tools` in chat's shape |
//! | `max_output_tokens` | `max_completion_tokens` |
//! | `temperature`, `top_p`, `user`, `safety_identifier`, `prompt_cache_key` | the same |
//! | `parallel_tool_calls` | the same, with tools (chat refuses it without) |
//! | `text.format` `json_schema` / `json_object` | `response_format`; `text` is chat's default |
//! | `text.verbosity` | `verbosity` |
//! | `reasoning.effort` | `reasoning_effort` (`reasoning.summary` is dropped) |
//! | `stream: true` | `stream: true`, `stream_options: {include_usage: true}` |
//! | `metadata` | not sent (chat keeps metadata only for stored completions); echoed |
//!
//! Accepted and not honoured: `store` (nothing is stored), `include`, `truncation`,
//! `max_tool_calls`, `top_logprobs`, `service_tier`, `stream_options` and any field chat has no
//! use for. Refused with a 400 naming the parameter: `previous_response_id`, `conversation`,
//! `prompt` (stored state), `background: true`, any tool that is not a function, items that
//! are not messages, function calls, their outputs or reasoning, and files or images by
//! `file_id`.

use serde_json::{json, Map, Value};

use super::input::messages;
use super::ResponsesEcho;
use crate::error::HttpError;
use crate::translate::{Target, Translated};

/// Why a request that needs stored state is refused.
pub(super) const STATELESS: &str =
    "this model's provider serves chat completions and the gateway stores no responses";

/// Translate a Responses request body into a chat completions request for `target.model`,
/// with the request's [`ResponsesEcho`] for its answer. The request takes its new length.
pub fn translate_request(body: &[u8], target: &Target<'_>) -> Result<Translated, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    refuse_stateful(&req)?;
    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("messages".into(), Value::Array(messages(&req)?));
    let tools = tools(&req)?;
    let choice = given(&req, "tool_choice").map(tool_choice).transpose()?;
    let parallel = check(&req, "parallel_tool_calls", Value::is_boolean, "a boolean")?;
    // Chat refuses `tool_choice` and `parallel_tool_calls` without tools.
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
        if let Some(p) = parallel {
            out.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    settings(&req, &mut out)?;
    text_settings(&req, &mut out)?;
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let mut translated = Translated::new(body, Vec::new());
    translated.echo = Some(ResponsesEcho::of(&req));
    Ok(translated)
}

/// A field's value, unless it is absent or `null`.
pub(super) fn given<'a>(req: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    req.get(k).filter(|v| !v.is_null())
}

/// A field's value when given, refused unless it is `what` (as `ok` tells).
pub(super) fn check<'a>(
    req: &'a Map<String, Value>,
    k: &'static str,
    ok: fn(&Value) -> bool,
    what: &str,
) -> Result<Option<&'a Value>, HttpError> {
    match given(req, k) {
        Some(v) if !ok(v) => Err(HttpError::invalid_param(
            k,
            format!("'{k}' must be {what}."),
        )),
        v => Ok(v),
    }
}

/// The parameters only a provider that stores responses (or runs them in the background) can
/// honour.
fn refuse_stateful(req: &Map<String, Value>) -> Result<(), HttpError> {
    let whole = "send the whole conversation in 'input'";
    for (k, hint) in [
        ("previous_response_id", whole),
        ("conversation", whole),
        (
            "prompt",
            "send the prompt's text in 'instructions' and 'input'",
        ),
    ] {
        if given(req, k).is_some() {
            return Err(HttpError::invalid_param(
                k,
                format!("'{k}' is not supported for this model: {STATELESS}; {hint}."),
            ));
        }
    }
    if req.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(HttpError::invalid_param(
            "background",
            format!("'background' responses are not supported for this model: {STATELESS}."),
        ));
    }
    Ok(())
}

/// The sampling, identity, length, reasoning and streaming fields.
fn settings(req: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), HttpError> {
    for k in ["temperature", "top_p"] {
        if let Some(v) = check(req, k, Value::is_number, "a number")? {
            out.insert(k.into(), v.clone());
        }
    }
    for k in ["user", "safety_identifier", "prompt_cache_key"] {
        if let Some(v) = check(req, k, Value::is_string, "a string")? {
            out.insert(k.into(), v.clone());
        }
    }
    let what = "a non-negative integer";
    if let Some(v) = check(req, "max_output_tokens", Value::is_u64, what)? {
        out.insert("max_completion_tokens".into(), v.clone());
    }
    let strings = |v: &Value| {
        v.as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    };
    check(req, "metadata", strings, "an object of strings")?;
    if let Some(r) = check(req, "reasoning", Value::is_object, "an object")? {
        match r.get("effort") {
            None | Some(Value::Null) => {}
            Some(e @ Value::String(_)) => {
                out.insert("reasoning_effort".into(), e.clone());
            }
            Some(_) => {
                return Err(HttpError::invalid_param(
                    "reasoning.effort",
                    "'reasoning.effort' must be a string.",
                ))
            }
        }
    }
    if check(req, "stream", Value::is_boolean, "a boolean")?.and_then(Value::as_bool) == Some(true)
    {
        out.insert("stream".into(), true.into());
        // The usage chunk: `response.completed` carries the usage.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(())
}

/// `text.format` as `response_format`, `text.verbosity` as `verbosity`.
fn text_settings(req: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), HttpError> {
    let Some(text) = check(req, "text", Value::is_object, "an object")? else {
        return Ok(());
    };
    match text.get("verbosity") {
        None | Some(Value::Null) => {}
        Some(v @ Value::String(_)) => {
            out.insert("verbosity".into(), v.clone());
        }
        Some(_) => {
            let m = "'text.verbosity' must be a string.";
            return Err(HttpError::invalid_param("text.verbosity", m));
        }
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    let bad = |m: String| HttpError::invalid_param("text.format", m);
    let response_format = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(()),
        Some("json_object") => json!({"type": "json_object"}),
        Some("json_schema") => json!({"type": "json_schema", "json_schema": json_schema(format)?}),
        Some(other) => {
            return Err(bad(format!(
                "A 'text.format' of type '{other}' cannot be translated to chat completions."
            )))
        }
        None => return Err(bad("'text.format' needs a 'type'.".into())),
    };
    out.insert("response_format".into(), response_format);
    Ok(())
}

/// A `json_schema` text format as chat's `json_schema` object.
fn json_schema(format: &Value) -> Result<Value, HttpError> {
    let Some(f) = format.as_object() else {
        return Err(HttpError::invalid_param(
            "text.format",
            "'text.format' must be an object.",
        ));
    };
    let field = |k: &'static str, param: &'static str, ok: fn(&Value) -> bool, what: &str| {
        match given(f, k) {
            None => Err(HttpError::missing_param(param)),
            Some(v) if !ok(v) => Err(HttpError::invalid_param(
                param,
                format!("'{param}' must be {what}."),
            )),
            Some(v) => Ok(v.clone()),
        }
    };
    let mut schema = Map::new();
    let name = field("name", "text.format.name", Value::is_string, "a string")?;
    schema.insert("name".into(), name);
    let body = field(
        "schema",
        "text.format.schema",
        Value::is_object,
        "an object",
    )?;
    schema.insert("schema".into(), body);
    for k in ["description", "strict"] {
        if let Some(v) = given(f, k) {
            schema.insert(k.into(), v.clone());
        }
    }
    Ok(Value::Object(schema))
}

/// The function tools as chat tools; any other tool type is refused.
fn tools(req: &Map<String, Value>) -> Result<Vec<Value>, HttpError> {
    let list = check(req, "tools", Value::is_array, "an array of tools")?;
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(j, t)| tool(j, t))
        .collect()
}

fn tool(j: usize, t: &Value) -> Result<Value, HttpError> {
    let bad = |m: String| HttpError::invalid_param("tools", m);
    let Some(kind) = t.get("type").and_then(Value::as_str) else {
        return Err(bad(format!(
            "Missing required parameter: 'tools[{j}].type'."
        )));
    };
    if kind != "function" {
        return Err(bad(format!(
            "Tools of type '{kind}' cannot be used with this model: its provider serves chat completions, which run only function tools."
        )));
    }
    let Some(name) = t.get("name").filter(|n| n.is_string()) else {
        return Err(bad(format!(
            "Missing required parameter: 'tools[{j}].name'."
        )));
    };
    let mut f = Map::new();
    f.insert("name".into(), name.clone());
    for k in ["description", "parameters", "strict"] {
        if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
            f.insert(k.into(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": f}))
}

/// A `tool_choice` in chat's shape.
fn tool_choice(tc: &Value) -> Result<Value, HttpError> {
    let bad = |m: String| HttpError::invalid_param("tool_choice", m);
    match tc {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(tc.clone()),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => Ok(json!({"type": "function", "function": {"name": function_name(o, "tool_choice")?}})),
            Some("allowed_tools") => allowed_tools(o),
            Some(other) => Err(bad(format!(
                "A 'tool_choice' of type '{other}' cannot be used with this model: its provider serves chat completions, which run only function tools."
            ))),
            None => Err(bad("Missing required parameter: 'tool_choice.type'.".into())),
        },
        _ => Err(bad(
            "'tool_choice' must be 'auto', 'none', 'required' or an object naming a function."
                .into(),
        )),
    }
}

/// The `name` of a function named in a `tool_choice`.
fn function_name(o: &Map<String, Value>, at: &str) -> Result<Value, HttpError> {
    o.get("name")
        .filter(|n| n.is_string())
        .cloned()
        .ok_or_else(|| {
            HttpError::invalid_param(
                "tool_choice",
                format!("Missing required parameter: '{at}.name'."),
            )
        })
}

/// An `allowed_tools` choice in chat's shape (its tools must be functions).
fn allowed_tools(o: &Map<String, Value>) -> Result<Value, HttpError> {
    let bad = |m: &str| HttpError::invalid_param("tool_choice", m.to_string());
    let mode = o
        .get("mode")
        .filter(|m| m.as_str().is_some_and(|m| m == "auto" || m == "required"))
        .ok_or_else(|| bad("'tool_choice.mode' must be 'auto' or 'required'."))?;
    let Some(list) = o.get("tools").and_then(Value::as_array) else {
        return Err(bad("Missing required parameter: 'tool_choice.tools'."));
    };
    let mut tools = Vec::new();
    for (j, t) in list.iter().enumerate() {
        let at = format!("tool_choice.tools[{j}]");
        match t.as_object() {
            Some(f) if f.get("type").and_then(Value::as_str) == Some("function") => {
                let name = function_name(f, &at)?;
                tools.push(json!({"type": "function", "function": {"name": name}}));
            }
            _ => {
                return Err(bad(&format!(
                    "'{at}' is not a function: chat completions run only function tools."
                )))
            }
        }
    }
    Ok(json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}}))
}
