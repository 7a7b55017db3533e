//! An OpenAI chat request as a Gemini `GenerateContentRequest` (see the module above for what
//! maps to what).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{split_call_id, Dialect, FOREIGN_SIGNATURE};
use crate::error::HttpError;
use crate::translate::{text_of, Translated};

/// The request body for `model`.
pub(super) fn translate(
    body: &[u8],
    model: &str,
    dialect: Dialect,
) -> Result<Translated, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| HttpError::missing_param("messages"))?;
    let mut conversation = Conversation::new(dialect);
    for m in messages {
        conversation.message(m)?;
    }
    let (system, contents) = conversation.finish();
    if contents.is_empty() {
        return Err(HttpError::invalid_param(
            "messages",
            "the conversation needs at least one user or assistant message with content",
        ));
    }
    let mut out = Map::new();
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    out.insert("contents".into(), Value::Array(contents));
    if let Some(t) = tools(&req)? {
        out.insert("tools".into(), t);
    }
    if let Some(c) = req
        .get("tool_choice")
        .map(tool_config)
        .transpose()?
        .flatten()
    {
        out.insert("toolConfig".into(), json!({"functionCallingConfig": c}));
    }
    let config = generation_config(&req, model)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    Ok(Translated::new(body, Vec::new()))
}

/// One turn being built: its role, its parts (each with the position of the call it answers,
/// for a turn of function responses), and whether it holds function responses.
struct Turn {
    role: &'static str,
    parts: Vec<(u64, Value)>,
    responses: bool,
}

/// The conversation read so far.
struct Conversation {
    dialect: Dialect,
    system: Vec<Value>,
    turns: Vec<Turn>,
    /// Each assistant tool call's own id → its function's name and its position among all the
    /// conversation's calls.
    calls: HashMap<String, (String, u64)>,
    next_call: u64,
}

impl Conversation {
    fn new(dialect: Dialect) -> Conversation {
        Conversation {
            dialect,
            system: Vec::new(),
            turns: Vec::new(),
            calls: HashMap::new(),
            next_call: 0,
        }
    }

    fn message(&mut self, m: &Value) -> Result<(), HttpError> {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = text_of(content);
                if !text.is_empty() {
                    self.system.push(json!({ "text": text }));
                }
                Ok(())
            }
            "user" => {
                let parts = parts(content, self.dialect)?;
                self.push("user", parts.into_iter().map(|p| (0, p)).collect(), false);
                Ok(())
            }
            "assistant" => self.assistant(m, content),
            "tool" => self.tool(m, content),
            other => Err(HttpError::invalid_param(
                "messages",
                format!("unknown message role '{other}'"),
            )),
        }
    }

    /// An assistant message: its text, then its tool calls as `functionCall` parts, the first
    /// carrying the step's thought signature.
    fn assistant(&mut self, m: &Value, content: &Value) -> Result<(), HttpError> {
        let mut turn: Vec<(u64, Value)> = parts(content, self.dialect)?
            .into_iter()
            .map(|p| (0, p))
            .collect();
        let calls = m.get("tool_calls").and_then(Value::as_array);
        for (i, call) in calls.into_iter().flatten().enumerate() {
            let f = call.get("function").unwrap_or(&Value::Null);
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                HttpError::invalid_param("messages", "an assistant tool call needs a function name")
            })?;
            let (id, carried) = split_call_id(call.get("id").and_then(Value::as_str).unwrap_or(""));
            let signature = carried
                .or_else(|| {
                    call.pointer("/extra_content/google/thought_signature")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .or_else(|| (i == 0).then(|| FOREIGN_SIGNATURE.to_string()));
            let mut fc = Map::new();
            if self.dialect == Dialect::GeminiApi && !id.is_empty() {
                fc.insert("id".into(), id.into());
            }
            fc.insert("name".into(), name.into());
            fc.insert("args".into(), arguments(f.get("arguments"))?);
            let mut part = Map::new();
            part.insert("functionCall".into(), Value::Object(fc));
            if let Some(s) = signature {
                part.insert("thoughtSignature".into(), s.into());
            }
            self.calls
                .insert(id.to_string(), (name.to_string(), self.next_call));
            self.next_call += 1;
            turn.push((0, Value::Object(part)));
        }
        self.push("model", turn, false);
        Ok(())
    }

    /// A `tool` message: a `functionResponse` named after the call it answers (or, when no
    /// earlier call has its id, after the message's own `name`, put after the known answers).
    fn tool(&mut self, m: &Value, content: &Value) -> Result<(), HttpError> {
        let raw = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
        let (id, _) = split_call_id(raw);
        let named = || {
            let name = m.get("name").and_then(Value::as_str)?;
            Some((name.to_string(), u64::MAX))
        };
        let Some((name, position)) = self.calls.get(id).cloned().or_else(named) else {
            return Err(HttpError::invalid_param(
                "messages",
                format!(
                    "the tool message's tool_call_id '{id}' answers no earlier assistant tool call"
                ),
            ));
        };
        let mut fr = Map::new();
        if self.dialect == Dialect::GeminiApi && !id.is_empty() {
            fr.insert("id".into(), id.into());
        }
        fr.insert("name".into(), name.into());
        // Vertex AI's FunctionResponse reference: the function's output goes under "output".
        fr.insert("response".into(), json!({ "output": text_of(content) }));
        self.push(
            "user",
            vec![(position, json!({ "functionResponse": fr }))],
            true,
        );
        Ok(())
    }

    /// Append parts as a turn of `role`, merged into the previous turn when it has the same role
    /// and holds the same kind of parts (function responses, or anything else).
    fn push(&mut self, role: &'static str, mut parts: Vec<(u64, Value)>, responses: bool) {
        if parts.is_empty() {
            return;
        }
        if let Some(last) = self.turns.last_mut() {
            if last.role == role && last.responses == responses {
                last.parts.append(&mut parts);
                return;
            }
        }
        self.turns.push(Turn {
            role,
            parts,
            responses,
        });
    }

    /// The system parts and the contents; function responses in the order of their calls.
    fn finish(self) -> (Vec<Value>, Vec<Value>) {
        let contents = self
            .turns
            .into_iter()
            .map(|mut t| {
                if t.responses {
                    t.parts.sort_by_key(|(position, _)| *position);
                }
                let parts: Vec<Value> = t.parts.into_iter().map(|(_, p)| p).collect();
                json!({"role": t.role, "parts": parts})
            })
            .collect();
        (self.system, contents)
    }
}

/// A tool call's `arguments` (JSON text) as the object Gemini's `args` is.
fn arguments(arguments: Option<&Value>) -> Result<Value, HttpError> {
    let text = arguments.and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(HttpError::invalid_param(
            "messages",
            "tool call arguments must be a JSON object",
        )),
    }
}

/// A message's `content` as Gemini parts (empty text is left out: Gemini refuses it).
fn parts(content: &Value, dialect: Dialect) -> Result<Vec<Value>, HttpError> {
    match content {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({ "text": s })]),
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.extend(part(item, dialect)?);
            }
            Ok(out)
        }
        _ => Err(HttpError::invalid_param(
            "messages",
            "'content' must be a string or an array of parts",
        )),
    }
}

/// One OpenAI content part as a Gemini part (`None` for empty text).
fn part(p: &Value, dialect: Dialect) -> Result<Option<Value>, HttpError> {
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let kind = text("type");
    match kind {
        "text" | "refusal" => {
            let t = text(kind);
            Ok((!t.is_empty()).then(|| json!({ "text": t })))
        }
        "image_url" => {
            let image = p.get("image_url").unwrap_or(&Value::Null);
            let url = image.get("url").or(Some(image)).and_then(Value::as_str);
            image_part(url.unwrap_or(""), dialect).map(Some)
        }
        "input_audio" => {
            let audio = p.get("input_audio").unwrap_or(&Value::Null);
            let format = audio.get("format").and_then(Value::as_str).unwrap_or("");
            let data = audio.get("data").and_then(Value::as_str).unwrap_or("");
            match format {
                "wav" | "mp3" => Ok(Some(
                    json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}),
                )),
                _ => Err(HttpError::invalid_param(
                    "messages",
                    "input_audio must be in format 'wav' or 'mp3'",
                )),
            }
        }
        "file" => file_part(p.get("file").unwrap_or(&Value::Null)).map(Some),
        other => Err(HttpError::invalid_param(
            "messages",
            format!("content parts of type '{other}' cannot be sent to this model's provider"),
        )),
    }
}

/// A `data:` URL's MIME type and base64 data.
fn data_url(url: &str) -> Option<Result<(&str, &str), HttpError>> {
    let rest = url.strip_prefix("data:")?;
    Some(rest.split_once(";base64,").ok_or_else(|| {
        HttpError::invalid_param(
            "messages",
            "a data URL must be base64 (data:<type>;base64,…)",
        )
    }))
}

/// An image URL as a part: a `data:` URL inline, an `http(s)` or `gs://` URL as `fileData` for
/// Google to fetch.
fn image_part(url: &str, dialect: Dialect) -> Result<Value, HttpError> {
    if let Some(parsed) = data_url(url) {
        let (mime, data) = parsed?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let scheme_ok = ["https://", "http://", "gs://"].iter().any(|s| {
        url.get(..s.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(s))
    });
    if !scheme_ok {
        return Err(HttpError::invalid_param(
            "messages",
            "an image_url must be a data:, https:, http: or gs: URL",
        ));
    }
    let mut file = Map::new();
    match (mime_of(url), dialect) {
        (Some(mime), _) => {
            file.insert("mimeType".into(), mime.into());
        }
        (None, Dialect::VertexAi) => {
            return Err(HttpError::invalid_param(
                "messages",
                "Vertex AI needs an image URL's MIME type: use a URL ending in .png, .jpg, .jpeg, \
                 .webp, .heic or .heif, or send the image as a data: URL",
            ))
        }
        (None, Dialect::GeminiApi) => {}
    }
    file.insert("fileUri".into(), url.into());
    Ok(json!({ "fileData": file }))
}

/// The MIME type a URL's file extension names, among the image and document types Gemini reads.
fn mime_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let (_, ext) = path.rsplit('/').next()?.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// An OpenAI `file` part (`file_data` as a data URL, or base64 of a `.pdf` `filename`) inline.
fn file_part(file: &Value) -> Result<Value, HttpError> {
    let data = file
        .get("file_data")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            HttpError::invalid_param(
                "messages",
                "a file part needs its file_data: file ids cannot be sent to this model's provider",
            )
        })?;
    let (mime, data) = match data_url(data) {
        Some(parsed) => parsed?,
        None => {
            let name = file.get("filename").and_then(Value::as_str).unwrap_or("");
            (
                mime_of(name).ok_or_else(|| {
                    HttpError::invalid_param(
                    "messages",
                    "a file part's file_data must be a data: URL (or the filename must say .pdf)",
                )
                })?,
                data,
            )
        }
    };
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

/// OpenAI function tools as one Gemini tool of `functionDeclarations`.
fn tools(req: &Map<String, Value>) -> Result<Option<Value>, HttpError> {
    let Some(list) = req.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut declarations = Vec::with_capacity(list.len());
    for t in list {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        let f = t
            .get("function")
            .filter(|_| kind == "function")
            .ok_or_else(|| {
                HttpError::invalid_param(
                    "tools",
                    format!("tools of type '{kind}' cannot be sent to this model's provider"),
                )
            })?;
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
            HttpError::invalid_param("tools", "a function tool needs its function's name")
        })?;
        let mut d = Map::new();
        d.insert("name".into(), name.into());
        if let Some(desc) = f.get("description").and_then(Value::as_str) {
            d.insert("description".into(), desc.into());
        }
        if let Some(schema) = f.get("parameters").filter(|p| p.is_object()) {
            d.insert("parametersJsonSchema".into(), schema.clone());
        }
        declarations.push(Value::Object(d));
    }
    Ok((!declarations.is_empty()).then(|| json!([{ "functionDeclarations": declarations }])))
}

/// An OpenAI `tool_choice` as a `functionCallingConfig` (`None` for null).
fn tool_config(choice: &Value) -> Result<Option<Value>, HttpError> {
    let bad = || {
        HttpError::invalid_param(
            "tool_choice",
            "this tool_choice cannot be sent to this model's provider",
        )
    };
    let name_of = |t: &Value| {
        t.pointer("/function/name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(bad)
    };
    let config = match choice {
        Value::Null => return Ok(None),
        Value::String(s) => match s.as_str() {
            "none" => json!({"mode": "NONE"}),
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            _ => return Err(bad()),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => json!({"mode": "ANY", "allowedFunctionNames": [name_of(choice)?]}),
            Some("allowed_tools") => {
                let allowed = o.get("allowed_tools").unwrap_or(&Value::Null);
                // VALIDATED: the model may answer in text, and its calls are to these functions.
                let mode = match allowed.get("mode").and_then(Value::as_str) {
                    Some("required") => "ANY",
                    Some("auto") | None => "VALIDATED",
                    Some(_) => return Err(bad()),
                };
                let names = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(name_of)
                    .collect::<Result<Vec<_>, _>>()?;
                json!({"mode": mode, "allowedFunctionNames": names})
            }
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    Ok(Some(config))
}

/// The request's `generationConfig` (empty when it sets nothing).
fn generation_config(
    req: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, HttpError> {
    let present = |k: &str| req.get(k).filter(|v| !v.is_null());
    let mut g = Map::new();
    if let Some(max) = present("max_completion_tokens").or_else(|| present("max_tokens")) {
        g.insert("maxOutputTokens".into(), max.clone());
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = present(from) {
            g.insert(to.into(), v.clone());
        }
    }
    match present("stop") {
        Some(Value::String(s)) => {
            g.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            g.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if present("logprobs").and_then(Value::as_bool) == Some(true) {
        g.insert("responseLogprobs".into(), true.into());
        if let Some(n) = present("top_logprobs") {
            g.insert("logprobs".into(), n.clone());
        }
    }
    response_format(present("response_format"), &mut g)?;
    if let Some(effort) = present("reasoning_effort") {
        let effort = effort.as_str().ok_or_else(|| {
            HttpError::invalid_param("reasoning_effort", "reasoning_effort must be a string")
        })?;
        g.insert("thinkingConfig".into(), thinking(effort, model)?);
    }
    Ok(g)
}

/// `response_format` as `responseMimeType` and `responseJsonSchema`.
fn response_format(format: Option<&Value>, g: &mut Map<String, Value>) -> Result<(), HttpError> {
    let Some(format) = format else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            g.insert("responseMimeType".into(), "application/json".into());
        }
        Some("json_schema") => {
            g.insert("responseMimeType".into(), "application/json".into());
            if let Some(schema) = format.pointer("/json_schema/schema") {
                g.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {
            return Err(HttpError::invalid_param(
                "response_format",
                "response_format must be of type 'text', 'json_object' or 'json_schema'",
            ))
        }
    }
    Ok(())
}

/// `reasoning_effort` as a `thinkingConfig`: a `thinkingBudget` for Gemini 2.x and earlier (the
/// 1K, 8K and 24K tokens Google's OpenAI layer uses; `none` is 0, off), a `thinkingLevel` for
/// Gemini 3 and later (which cannot turn thinking off: `none` is the lowest level the model
/// has; the 3.0 Pro has no `medium`). Thought summaries are asked for unless thinking is off.
fn thinking(effort: &str, model: &str) -> Result<Value, HttpError> {
    let unknown = || {
        HttpError::invalid_param(
            "reasoning_effort",
            format!("reasoning_effort '{effort}' is not one of none, minimal, low, medium, high"),
        )
    };
    let name = model.to_ascii_lowercase();
    if name.contains("gemini-1") || name.contains("gemini-2") {
        let budget = match effort {
            "none" => return Ok(json!({ "thinkingBudget": 0 })),
            "minimal" | "low" => 1024,
            "medium" => 8192,
            "high" | "xhigh" => 24576,
            _ => return Err(unknown()),
        };
        return Ok(json!({"thinkingBudget": budget, "includeThoughts": true}));
    }
    let pro = name.contains("pro");
    let level = match effort {
        "none" | "minimal" if pro => "low",
        "none" | "minimal" => "minimal",
        "low" => "low",
        "medium" if name.contains("gemini-3-pro") => "high",
        "medium" => "medium",
        "high" | "xhigh" => "high",
        _ => return Err(unknown()),
    };
    Ok(json!({"thinkingLevel": level, "includeThoughts": true}))
}
