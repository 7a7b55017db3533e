//! GenerateContentRequest reading and Google's error shape.

use super::*;

#[test]
fn reads_tools_modes_and_generation_config() {
    let body = json!({
        "contents": [{"parts": [{"text": "Hi"}]}],
        "tools": [{"functionDeclarations": [
            {"name": "a", "parameters": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "nullable": true}}}},
            {"name": "b"}]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"candidateCount": 3, "maxOutputTokens": 9, "stopSequences": ["x"],
            "thinkingConfig": {"thinkingBudget": 128, "includeThoughts": true}, "seed": 1}});
    let r = parse_generate(body.to_string().as_bytes(), "gemini-2.5-pro", false).unwrap();
    assert_eq!(
        r.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(r.tool_choice, ToolChoice::Any);
    assert_eq!((r.candidate_count, r.max_output_tokens), (3, Some(9)));
    assert_eq!(r.stop_sequences, ["x"]);
    assert_eq!((r.thinking_budget, r.include_thoughts), (Some(128), true));
    assert_eq!(r.prompt_tokens, count("Hi"));
    assert!(!r.answers_function_responses);
}

#[test]
fn openapi_schemas_become_json_schema() {
    let s = json!({"type": "OBJECT", "propertyOrdering": ["a"], "properties": {
        "a": {"type": "STRING", "nullable": true, "enum": ["x"]},
        "b": {"type": "ARRAY", "items": {"type": "NUMBER"}},
        "c": {"anyOf": [{"type": "INTEGER"}, {"type": "BOOLEAN"}]}}, "required": ["a"]});
    assert_eq!(
        openapi_to_json_schema(&s),
        json!({"type": "object", "properties": {
            "a": {"type": ["string", "null"], "enum": ["x"]},
            "b": {"type": "array", "items": {"type": "number"}},
            "c": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}}, "required": ["a"]})
    );
}

#[test]
fn unknown_fields_are_refused_in_either_spelling() {
    let parse = |v: Value, vertex: bool| {
        parse_generate(v.to_string().as_bytes(), "gemini-2.5-flash", vertex)
    };
    let ok = json!({"contents": [{"parts": [{"text": "a"}]}], "generation_config": {"response_mime_type": "text/plain"}});
    assert!(parse(ok, false).is_ok());
    let labels = json!({"contents": [{"parts": [{"text": "a"}]}], "labels": {"a": "b"}});
    assert_eq!(
        parse(labels.clone(), false).unwrap_err().message,
        "Invalid JSON payload received. Unknown name \"labels\": Cannot find field."
    );
    assert!(parse(labels, true).is_ok());
    let err = parse(json!({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"thinkingConfig": {"effort": "high"}}}), false).unwrap_err();
    assert_eq!(err.message, "Invalid JSON payload received. Unknown name \"effort\" at 'generation_config.thinking_config': Cannot find field.");
    let err = parse(json!({"contents": [{"parts": [{"text": "a", "inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]}), false).unwrap_err();
    assert!(
        err.message.contains("Oneof field 'data' is already set"),
        "{}",
        err.message
    );
    let err = parse(json!({"contents": [{"parts": [{"thought": true}]}]}), false).unwrap_err();
    assert!(
        err.message.contains("required oneof field 'data'"),
        "{}",
        err.message
    );
}

#[test]
fn errors_have_googles_shape() {
    let err = Error::simulated(
        StatusCode::TOO_MANY_REQUESTS,
        "generativelanguage.googleapis.com",
    );
    let body = err.body();
    assert_eq!(body["error"]["code"], 429);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        body["error"]["details"][1]["metadata"]["service"],
        "generativelanguage.googleapis.com"
    );
    assert_eq!(
        Error::invalid("x").body(),
        json!({"error": {"code": 400, "message": "x", "status": "INVALID_ARGUMENT"}})
    );
    assert_eq!(
        Error::status_name(StatusCode::GATEWAY_TIMEOUT),
        "DEADLINE_EXCEEDED"
    );
    assert!(Error::invalid("x").stream_frame().ends_with("}\r\n\r\n"));
    let resp = Error::new(503, "busy").response();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
}
