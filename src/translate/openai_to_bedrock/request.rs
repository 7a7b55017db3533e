//! An OpenAI chat request's parts as Converse's: the conversation (`system`, `messages`), the
//! tools (`toolConfig`), the sampling settings (`inferenceConfig`) and structured output
//! (`outputConfig`).

use serde_json::{json, Map, Value};

use crate::error::HttpError;
use crate::translate::text_of;

/// The system blocks and the alternating user and assistant messages of OpenAI `messages`.
/// Consecutive messages of one role (a `tool` message is a user's) are merged into one.
pub(super) fn conversation(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), HttpError> {
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                // Converse refuses a blank system block.
                let text = text_of(content);
                if !text.trim().is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            "user" => push_turn(&mut turns, "user", blocks(i, content)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(m, i, content)?),
            "tool" => push_turn(&mut turns, "user", vec![tool_result(m, content)]),
            other => {
                return Err(HttpError::invalid_param(
                    "messages",
                    format!("unknown message role '{other}' in messages[{i}]"),
                ))
            }
        }
    }
    Ok((system, turns))
}

/// A `tool` message as a `toolResult` block: its text, one block per text part.
fn tool_result(m: &Value, content: &Value) -> Value {
    let texts: Vec<Value> = match content {
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| json!({"text": t}))
            .collect(),
        other => vec![json!({"text": text_of(other)})],
    };
    json!({"toolResult": {
        "toolUseId": m.get("tool_call_id").and_then(Value::as_str).unwrap_or(""),
        "content": texts,
    }})
}

/// An assistant message's content blocks, its tool calls as `toolUse` blocks after them.
fn assistant_blocks(m: &Value, i: usize, content: &Value) -> Result<Vec<Value>, HttpError> {
    let mut b = blocks(i, content)?;
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = serde_json::from_str(args).map_err(|_| {
            HttpError::invalid_param(
                "messages",
                format!("the tool call arguments in messages[{i}] must be JSON"),
            )
        })?;
        b.push(json!({"toolUse": {
            "toolUseId": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
            "input": input,
        }}));
    }
    Ok(b)
}

/// A message's content as Converse content blocks; blank text is left out (Converse refuses a
/// blank text block).
fn blocks(i: usize, content: &Value) -> Result<Vec<Value>, HttpError> {
    let text = |s: &str| (!s.trim().is_empty()).then(|| json!({"text": s}));
    match content {
        Value::String(s) => Ok(text(s).into_iter().collect()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" | "refusal" => {
                        let t = part.get("text").or_else(|| part.get("refusal"));
                        out.extend(text(t.and_then(Value::as_str).unwrap_or("")));
                    }
                    "image_url" => out.push(image(i, part)?),
                    other => {
                        return Err(HttpError::invalid_param(
                            "messages",
                            format!("content parts of type '{other}' (messages[{i}]) cannot be sent to this model's provider"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(HttpError::invalid_param(
            "messages",
            format!("'content' of messages[{i}] must be a string or an array of parts"),
        )),
    }
}

/// An `image_url` part as an `image` block. Converse takes an image's bytes (base64 in JSON)
/// in one of four formats, never a URL to fetch.
fn image(i: usize, part: &Value) -> Result<Value, HttpError> {
    let url = part
        .get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(HttpError::invalid_param(
            "messages",
            format!("messages[{i}]: this model's provider (Bedrock) takes images only inline: send image_url.url as a data: URL (data:image/png;base64,...), not a link"),
        ));
    };
    let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
        HttpError::invalid_param(
            "messages",
            format!("messages[{i}]: an image data URL must be base64"),
        )
    })?;
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(HttpError::invalid_param(
                "messages",
                format!("messages[{i}]: images of type '{other}' cannot be sent to this model's provider (png, jpeg, gif and webp can)"),
            ))
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// Append a turn, merging it into the previous one when the role repeats; an empty turn is
/// left out.
fn push_turn(turns: &mut Vec<Value>, role: &str, mut content: Vec<Value>) {
    if content.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(arr) = last.get_mut("content").and_then(Value::as_array_mut) {
                arr.append(&mut content);
                return;
            }
        }
    }
    turns.push(json!({"role": role, "content": content}));
}

/// Whether the conversation holds tool calls or results (Converse then requires `toolConfig`).
fn has_tool_blocks(turns: &[Value]) -> bool {
    turns
        .iter()
        .filter_map(|t| t.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
}

/// `toolConfig` from OpenAI `tools` and `tool_choice`; `None` when no tool is offered.
///
/// `tool_choice: "none"` has no Converse counterpart (`toolChoice` is `auto`, `any` or
/// `tool`): the tools are then not offered at all, unless the conversation already holds tool
/// calls or results, for which Converse requires `toolConfig`; then the tools are sent without
/// a `toolChoice` (the model's default, `auto`).
pub(super) fn tool_config(req: &Map<String, Value>, turns: &[Value]) -> Option<Value> {
    let tools: Vec<Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .map(tool_spec)
        .collect();
    if tools.is_empty() {
        return None;
    }
    let choice = req.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") && !has_tool_blocks(turns) {
        return None;
    }
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(tools));
    if let Some(c) = choice.and_then(tool_choice) {
        config.insert("toolChoice".into(), c);
    }
    Some(Value::Object(config))
}

/// An OpenAI function as a Converse `toolSpec`.
fn tool_spec(f: &Value) -> Value {
    let mut spec = Map::new();
    spec.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
    if let Some(d) = f
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        spec.insert("description".into(), d.into());
    }
    let schema = f
        .get("parameters")
        .filter(|p| p.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    spec.insert("inputSchema".into(), json!({"json": schema}));
    json!({"toolSpec": spec})
}

/// An OpenAI `tool_choice` as Converse's; `None` for `none` and what Converse has no word for.
fn tool_choice(tc: &Value) -> Option<Value> {
    match tc {
        Value::String(s) if s == "auto" => Some(json!({"auto": {}})),
        Value::String(s) if s == "required" => Some(json!({"any": {}})),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"tool": {"name": n}})),
        _ => None,
    }
}

/// `inferenceConfig` from `max_completion_tokens` (or `max_tokens`), `temperature`, `top_p`
/// and `stop`; `None` when the request sets none of them (the model's defaults apply).
pub(super) fn inference_config(req: &Map<String, Value>) -> Option<Value> {
    let mut c = Map::new();
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).filter(|v| !v.is_null()));
    if let Some(m) = max {
        c.insert("maxTokens".into(), m.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = req.get(from).filter(|v| !v.is_null()) {
            c.insert(to.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            c.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            c.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    (!c.is_empty()).then_some(Value::Object(c))
}

/// `outputConfig` for a `response_format` of type `json_schema`: Converse's structured output
/// (`textFormat` of type `json_schema`, the schema as JSON text). Other formats (`text`,
/// `json_object`) have no Converse counterpart and are left out, as for an Anthropic provider.
pub(super) fn output_config(req: &Map<String, Value>) -> Result<Option<Value>, HttpError> {
    let Some(rf) = req.get("response_format").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if rf.get("type").and_then(Value::as_str) != Some("json_schema") {
        return Ok(None);
    }
    let spec = rf.get("json_schema").unwrap_or(&Value::Null);
    let Some(schema) = spec.get("schema").filter(|s| s.is_object()) else {
        return Err(HttpError::invalid_param(
            "response_format",
            "response_format.json_schema.schema must be a JSON schema object",
        ));
    };
    let mut def = Map::new();
    def.insert("schema".into(), schema.to_string().into());
    for k in ["name", "description"] {
        if let Some(v) = spec.get(k).and_then(Value::as_str) {
            def.insert(k.into(), v.into());
        }
    }
    Ok(Some(json!({"textFormat": {
        "type": "json_schema",
        "structure": {"jsonSchema": def},
    }})))
}
