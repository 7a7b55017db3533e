//! The checks Google's front end makes on a GenerateContentRequest, and its reading.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{count, openapi_to_json_schema, Error, GenerateRequest, JsonOutput};
use crate::anthropic::{Tool, ToolChoice};

/// The start of every thought signature the fake issues (they are base64 of these bytes and a
/// random tail).
pub const SIGNATURE_PREFIX: &[u8] = b"fake-provider thought signature ";
/// The values Google documents for skipping the signature check (history from elsewhere).
const DUMMY_SIGNATURES: &[&str] = &[
    "context_engineering_is_the_way_to_go",
    "skip_thought_signature_validator",
];

/// Gemini 3 models (which always think and check thought signatures).
pub fn is_gemini_3(model: &str) -> bool {
    model.starts_with("gemini-3")
}

const REQUEST: &[&str] = &[
    "model",
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
];
const VERTEX_REQUEST: &[&str] = &["labels", "modelArmorConfig"];
const CONTENT: &[&str] = &["role", "parts"];
const PART: &[&str] = &[
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
    "mediaResolution",
];
/// The members of Part's `data` oneof.
const PART_DATA: &[&str] = &[
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
];
const BLOB: &[&str] = &["mimeType", "data", "displayName"];
const FUNCTION_CALL: &[&str] = &["id", "name", "args", "partialArgs", "willContinue"];
const FUNCTION_RESPONSE: &[&str] = &[
    "id",
    "name",
    "response",
    "parts",
    "willContinue",
    "scheduling",
];
const TOOL: &[&str] = &[
    "functionDeclarations",
    "googleSearchRetrieval",
    "codeExecution",
    "googleSearch",
    "computerUse",
    "urlContext",
    "fileSearch",
    "googleMaps",
    "retrieval",
    "enterpriseWebSearch",
];
const DECLARATION: &[&str] = &[
    "name",
    "description",
    "behavior",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
];
const TOOL_CONFIG: &[&str] = &["functionCallingConfig", "retrievalConfig"];
const CALLING_CONFIG: &[&str] = &["mode", "allowedFunctionNames"];
const GENERATION: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
    "routingConfig",
    "audioTimestamp",
];
const THINKING: &[&str] = &["includeThoughts", "thinkingBudget", "thinkingLevel"];
/// The fields of Gemini's `Schema` (a subset of OpenAPI 3.0).
const SCHEMA: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];
/// Vertex AI's `Schema` has these too.
const VERTEX_SCHEMA: &[&str] = &["additionalProperties", "ref", "defs"];
const TYPES: &[&str] = &[
    "TYPE_UNSPECIFIED",
    "STRING",
    "NUMBER",
    "INTEGER",
    "BOOLEAN",
    "ARRAY",
    "OBJECT",
    "NULL",
];
const MODES: &[&str] = &["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"];

/// `snake_case` as the proto spells it, `camelCase` as JSON does.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `at` followed by a field (`parent.field`).
fn join(at: &str, field: &str) -> String {
    if at.is_empty() {
        snake(field)
    } else {
        format!("{at}.{}", snake(field))
    }
}

/// Refuses any field of `obj` that is not among `known` (in either spelling).
fn fields(obj: &Map<String, Value>, known: &[&str], extra: &[&str], at: &str) -> Result<(), Error> {
    for name in obj.keys() {
        let c = camel(name);
        if !known.contains(&c.as_str()) && !extra.contains(&c.as_str()) {
            let place = if at.is_empty() {
                String::new()
            } else {
                format!(" at '{at}'")
            };
            return Err(Error::invalid(format!(
                "Invalid JSON payload received. Unknown name \"{name}\"{place}: Cannot find field."
            )));
        }
    }
    Ok(())
}

/// The value of a field under either spelling.
fn get<'a>(obj: &'a Map<String, Value>, camel_name: &str) -> Option<&'a Value> {
    obj.get(camel_name)
        .or_else(|| obj.get(&snake(camel_name)))
        .filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object().ok_or_else(|| {
        Error::invalid(format!(
            "Invalid value at '{at}' (type.googleapis.com/google.protobuf.Struct), {v}"
        ))
    })
}

fn message_object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object().ok_or_else(|| {
        Error::invalid(format!(
            "Invalid JSON payload received. Expected an object at '{at}', got {v}."
        ))
    })
}

fn array<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>, Error> {
    v.as_array().ok_or_else(|| {
        Error::invalid(format!(
            "Invalid JSON payload received. Expected a list at '{at}', got {v}."
        ))
    })
}

fn base64_ok(s: &str) -> bool {
    let e = &base64::engine::general_purpose::STANDARD;
    let u = &base64::engine::general_purpose::URL_SAFE;
    let n = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    e.decode(s).is_ok() || u.decode(s).is_ok() || n.decode(s).is_ok()
}

fn bytes(v: &Value, at: &str) -> Result<(), Error> {
    match v.as_str() {
        Some(s) if base64_ok(s) => Ok(()),
        _ => Err(Error::invalid(format!(
            "Invalid value at '{at}' (TYPE_BYTES), Base64 decoding failed for {v}"
        ))),
    }
}

/// An enum value (upper case, or lower case as Google also reads it).
fn enum_value(v: &Value, at: &str, values: &[&str], proto: &str) -> Result<String, Error> {
    match v.as_str().map(str::to_ascii_uppercase) {
        Some(s) if values.contains(&s.as_str()) => Ok(s),
        _ if v.is_array() => Err(Error::invalid(
            "Invalid JSON payload received. Proto field is not repeating, cannot start list.",
        )),
        _ => Err(Error::invalid(format!(
            "Invalid value at '{at}' (type.googleapis.com/google.ai.generativelanguage.v1beta.{proto}), {v}"
        ))),
    }
}

/// Checks a `Schema` (the OpenAPI subset) and the schemas inside it.
fn schema(v: &Value, at: &str, vertex: bool) -> Result<(), Error> {
    let obj = message_object(v, at)?;
    fields(obj, SCHEMA, if vertex { VERTEX_SCHEMA } else { &[] }, at)?;
    if let Some(t) = get(obj, "type") {
        enum_value(t, &join(at, "type"), TYPES, "Type")?;
    }
    if let Some(props) = get(obj, "properties") {
        let props = message_object(props, &join(at, "properties"))?;
        for (i, s) in props.values().enumerate() {
            schema(s, &format!("{}[{i}].value", join(at, "properties")), vertex)?;
        }
    }
    if let Some(items) = get(obj, "items") {
        schema(items, &join(at, "items"), vertex)?;
    }
    if let Some(branches) = get(obj, "anyOf") {
        for (i, s) in array(branches, &join(at, "anyOf"))?.iter().enumerate() {
            schema(s, &format!("{}[{i}]", join(at, "anyOf")), vertex)?;
        }
    }
    Ok(())
}

/// What one content holds, for the turn checks.
struct Turn<'a> {
    role: &'a str,
    calls: usize,
    responses: usize,
    /// Has a part that is neither a function response nor a thought (a user turn starts here).
    plain: bool,
    /// The first function call: its name and whether it carries a thought signature.
    first_call: Option<(&'a str, bool)>,
    signatures: Vec<&'a str>,
}

fn part<'a>(v: &'a Value, at: &str, tokens: &mut u64, turn: &mut Turn<'a>) -> Result<(), Error> {
    let obj = message_object(v, at)?;
    fields(obj, PART, &[], at)?;
    let mut data = PART_DATA.iter().filter(|name| get(obj, name).is_some());
    let Some(kind) = data.next() else {
        return Err(Error::invalid(format!(
            "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field\n"
        )));
    };
    if let Some(second) = data.next() {
        return Err(Error::invalid(format!(
            "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{second}'"
        )));
    }
    let signature = get(obj, "thoughtSignature");
    if let Some(sig) = signature {
        bytes(sig, &join(at, "thoughtSignature"))?;
        turn.signatures.extend(sig.as_str());
    }
    let thought = get(obj, "thought").and_then(Value::as_bool) == Some(true);
    let value = get(obj, kind).unwrap_or(&Value::Null);
    let vat = join(at, kind);
    let no_extra: &[&str] = &[];
    match *kind {
        "text" => {
            *tokens += count(value.as_str().unwrap_or_default());
            turn.plain |= !thought;
        }
        "inlineData" | "fileData" => {
            let blob = message_object(value, &vat)?;
            if *kind == "inlineData" {
                fields(blob, BLOB, no_extra, &vat)?;
                bytes(
                    get(blob, "data").unwrap_or(&Value::Null),
                    &join(&vat, "data"),
                )?;
            }
            turn.plain = true;
        }
        "functionCall" => {
            let call = message_object(value, &vat)?;
            fields(call, FUNCTION_CALL, no_extra, &vat)?;
            let name = get(call, "name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(args) = get(call, "args") {
                object(args, &join(&vat, "args"))?;
                *tokens += count(&args.to_string());
            }
            *tokens += count(name);
            turn.calls += 1;
            if turn.first_call.is_none() {
                turn.first_call = Some((name, signature.is_some()));
            }
        }
        "functionResponse" => {
            let response = message_object(value, &vat)?;
            fields(response, FUNCTION_RESPONSE, no_extra, &vat)?;
            let name = get(response, "name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = get(response, "response").unwrap_or(&Value::Null);
            object(body, &join(&vat, "response"))?;
            *tokens += count(name) + count(&body.to_string());
            turn.responses += 1;
        }
        _ => turn.plain = true,
    }
    Ok(())
}

fn content<'a>(v: &'a Value, at: &str, tokens: &mut u64) -> Result<Turn<'a>, Error> {
    let obj = message_object(v, at)?;
    fields(obj, CONTENT, &[], at)?;
    let role = match get(obj, "role").and_then(Value::as_str) {
        None | Some("") | Some("user") => "user",
        Some("model") => "model",
        Some(_) => return Err(Error::invalid("Please use a valid role: user, model.")),
    };
    let parts = match get(obj, "parts") {
        Some(p) => array(p, &join(at, "parts"))?,
        None => {
            return Err(Error::invalid(format!(
                "* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
            )))
        }
    };
    if parts.is_empty() {
        return Err(Error::invalid(format!(
            "* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
        )));
    }
    let mut turn = Turn {
        role,
        calls: 0,
        responses: 0,
        plain: false,
        first_call: None,
        signatures: Vec::new(),
    };
    for (j, p) in parts.iter().enumerate() {
        part(p, &format!("{at}.parts[{j}]"), tokens, &mut turn)?;
    }
    Ok(turn)
}

/// The function call and response turn rules, and Gemini 3's thought signatures.
fn check_turns(turns: &[Turn<'_>], model: &str) -> Result<(), Error> {
    for (i, turn) in turns.iter().enumerate() {
        let previous = i.checked_sub(1).and_then(|p| turns.get(p));
        if turn.responses > 0 {
            let Some(prev) = previous.filter(|p| p.role == "model" && p.calls > 0) else {
                return Err(Error::invalid("Please ensure that function response turn comes immediately after a function call turn."));
            };
            if prev.calls != turn.responses {
                return Err(Error::invalid("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."));
            }
        }
        if turn.role == "model" && turn.calls > 0 && previous.is_none_or(|p| p.role != "user") {
            return Err(Error::invalid("Please ensure that function call turn comes immediately after a user turn or after a function response turn."));
        }
    }
    if !is_gemini_3(model) {
        return Ok(());
    }
    for sig in turns.iter().flat_map(|t| &t.signatures) {
        let engine = &base64::engine::general_purpose::STANDARD;
        let ours = engine
            .decode(sig)
            .is_ok_and(|b| b.starts_with(SIGNATURE_PREFIX));
        if !ours && !DUMMY_SIGNATURES.contains(sig) {
            return Err(Error::invalid("Corrupted thought signature."));
        }
    }
    let start = turns
        .iter()
        .rposition(|t| t.role == "user" && t.plain)
        .unwrap_or(0);
    for (i, turn) in turns.iter().enumerate().skip(start) {
        if let Some((name, false)) = turn.first_call.filter(|_| turn.role == "model") {
            return Err(Error::invalid(format!(
                "Function call is missing a thought_signature in functionCall parts. This is \
                 required for tools to work correctly, and missing thought_signature may lead to \
                 degraded model performance. Additional data, function call `default_api:{name}` \
                 , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures \
                 for more details.",
                i + 1
            )));
        }
    }
    Ok(())
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

fn tools(obj: &Map<String, Value>, vertex: bool) -> Result<Vec<Tool>, Error> {
    let mut out = Vec::new();
    let Some(list) = get(obj, "tools") else {
        return Ok(out);
    };
    for (i, tool) in array(list, "tools")?.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = message_object(tool, &at)?;
        fields(tool, TOOL, &[], &at)?;
        let Some(decls) = get(tool, "functionDeclarations") else {
            continue;
        };
        for (j, decl) in array(decls, &join(&at, "functionDeclarations"))?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.function_declarations[{j}]");
            let decl = message_object(decl, &at)?;
            fields(decl, DECLARATION, &[], &at)?;
            let name = get(decl, "name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name.is_empty() {
                return Err(Error::invalid(format!(
                    "* GenerateContentRequest.{at}.name: Name cannot be empty.\n"
                )));
            }
            if !valid_function_name(name) {
                return Err(Error::invalid(format!("* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.\n")));
            }
            let input_schema = match (get(decl, "parameters"), get(decl, "parametersJsonSchema")) {
                (Some(p), _) => {
                    schema(p, &join(&at, "parameters"), vertex)?;
                    openapi_to_json_schema(p)
                }
                (None, Some(s)) => s.clone(),
                (None, None) => Value::Object(Map::new()),
            };
            out.push(Tool {
                name: name.to_owned(),
                input_schema,
            });
        }
    }
    Ok(out)
}

fn tool_choice(obj: &Map<String, Value>, tools: &mut Vec<Tool>) -> Result<ToolChoice, Error> {
    let Some(config) = get(obj, "toolConfig") else {
        return Ok(ToolChoice::Auto);
    };
    let config = message_object(config, "tool_config")?;
    fields(config, TOOL_CONFIG, &[], "tool_config")?;
    let Some(calling) = get(config, "functionCallingConfig") else {
        return Ok(ToolChoice::Auto);
    };
    let at = "tool_config.function_calling_config";
    let calling = message_object(calling, at)?;
    fields(calling, CALLING_CONFIG, &[], at)?;
    let mode = match get(calling, "mode") {
        Some(m) => enum_value(
            m,
            &format!("{at}.mode"),
            MODES,
            "FunctionCallingConfig.Mode",
        )?,
        None => "AUTO".to_owned(),
    };
    let allowed: Vec<&str> = match get(calling, "allowedFunctionNames") {
        Some(list) => array(list, &format!("{at}.allowed_function_names"))?
            .iter()
            .filter_map(Value::as_str)
            .collect(),
        None => Vec::new(),
    };
    if !allowed.is_empty() && mode != "ANY" {
        return Err(Error::invalid(format!("* GenerateContentRequest.{at}.allowed_function_names: allowed_function_names is only allowed when mode is ANY.\n")));
    }
    Ok(match mode.as_str() {
        "NONE" => ToolChoice::None,
        "ANY" => {
            if !allowed.is_empty() {
                tools.retain(|t| allowed.contains(&t.name.as_str()));
            }
            ToolChoice::Any
        }
        _ => ToolChoice::Auto,
    })
}

/// The reading of `generationConfig`.
struct Generation {
    max_output_tokens: Option<u64>,
    candidate_count: u32,
    stop_sequences: Vec<String>,
    json: Option<JsonOutput>,
    thinking_budget: Option<i64>,
    include_thoughts: bool,
}

fn generation(obj: &Map<String, Value>, vertex: bool) -> Result<Generation, Error> {
    let mut g = Generation {
        max_output_tokens: None,
        candidate_count: 1,
        stop_sequences: Vec::new(),
        json: None,
        thinking_budget: None,
        include_thoughts: false,
    };
    let Some(config) = get(obj, "generationConfig") else {
        return Ok(g);
    };
    let at = "generation_config";
    let config = message_object(config, at)?;
    fields(config, GENERATION, &[], at)?;
    let int = |name: &str| -> Result<Option<i64>, Error> {
        match get(config, name) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid value at '{}' (TYPE_INT32), {v}",
                    join(at, name)
                ))
            }),
        }
    };
    g.max_output_tokens = int("maxOutputTokens")?
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0);
    if let Some(n) = int("candidateCount")? {
        g.candidate_count = u32::try_from(n).ok().filter(|n| (1..=8).contains(n)).ok_or_else(|| Error::invalid(format!("* GenerateContentRequest.generation_config.candidate_count: candidate_count must be between 1 and 8, got {n}.\n")))?;
    }
    if let Some(t) = get(config, "temperature").map(|t| t.as_f64().unwrap_or(-1.0)) {
        if !(0.0..=2.0).contains(&t) {
            return Err(Error::invalid("* GenerateContentRequest.generation_config.temperature: temperature must be in the range [0.0, 2.0].\n"));
        }
    }
    if let Some(stops) = get(config, "stopSequences") {
        g.stop_sequences = array(stops, &join(at, "stopSequences"))?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    let mime = get(config, "responseMimeType")
        .and_then(Value::as_str)
        .unwrap_or("text/plain");
    let schema_value = match (
        get(config, "responseJsonSchema"),
        get(config, "responseSchema"),
    ) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(s)) => {
            schema(s, &join(at, "responseSchema"), vertex)?;
            Some(openapi_to_json_schema(s))
        }
        (None, None) => None,
    };
    if mime == "application/json" {
        g.json = Some(JsonOutput {
            schema: schema_value,
        });
    } else if schema_value.is_some() {
        return Err(Error::invalid(format!("* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must be application/json when a response schema is set, got \"{mime}\".\n")));
    }
    if let Some(thinking) = get(config, "thinkingConfig") {
        let tat = join(at, "thinkingConfig");
        let thinking = message_object(thinking, &tat)?;
        fields(thinking, THINKING, &[], &tat)?;
        g.thinking_budget = get(thinking, "thinkingBudget").and_then(Value::as_i64);
        g.include_thoughts =
            get(thinking, "includeThoughts").and_then(Value::as_bool) == Some(true);
    }
    Ok(g)
}

/// Checks and reads a GenerateContentRequest.
pub(super) fn request(
    obj: &Map<String, Value>,
    model: &str,
    vertex: bool,
) -> Result<GenerateRequest, Error> {
    fields(obj, REQUEST, if vertex { VERTEX_REQUEST } else { &[] }, "")?;
    let mut prompt_tokens = 0;
    let contents = match get(obj, "contents") {
        Some(c) => array(c, "contents")?,
        None => {
            return Err(Error::invalid(
                "* GenerateContentRequest.contents: contents is not specified\n",
            ))
        }
    };
    if contents.is_empty() {
        return Err(Error::invalid(
            "* GenerateContentRequest.contents: contents is not specified\n",
        ));
    }
    let turns = contents
        .iter()
        .enumerate()
        .map(|(i, c)| content(c, &format!("contents[{i}]"), &mut prompt_tokens))
        .collect::<Result<Vec<_>, _>>()?;
    check_turns(&turns, model)?;
    if let Some(system) = get(obj, "systemInstruction") {
        let at = "system_instruction";
        let system = message_object(system, at)?;
        fields(system, CONTENT, &[], at)?;
        for (j, p) in get(system, "parts")
            .map(|p| array(p, "system_instruction.parts"))
            .transpose()?
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mut turn = Turn {
                role: "user",
                calls: 0,
                responses: 0,
                plain: false,
                first_call: None,
                signatures: Vec::new(),
            };
            part(
                p,
                &format!("{at}.parts[{j}]"),
                &mut prompt_tokens,
                &mut turn,
            )?;
        }
    }
    let mut tools = tools(obj, vertex)?;
    let tool_choice = tool_choice(obj, &mut tools)?;
    let g = generation(obj, vertex)?;
    Ok(GenerateRequest {
        tools,
        tool_choice,
        answers_function_responses: turns.last().is_some_and(|t| t.responses > 0),
        max_output_tokens: g.max_output_tokens,
        candidate_count: g.candidate_count,
        stop_sequences: g.stop_sequences,
        json: g.json,
        thinking_budget: g.thinking_budget,
        include_thoughts: g.include_thoughts,
        prompt_tokens,
    })
}
