use axum::http::StatusCode;
use serde_json::{json, Value};
use tiktoken_rs::{ChatCompletionRequestMessage, FunctionCall};

use super::*;

fn none(_: &str) -> Option<Prev> {
    None
}

fn parse(v: Value) -> Result<CreateRequest, ApiError> {
    parse_create(v.as_object().unwrap(), &none, false)
}

fn msg(role: &str, content: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage {
        role: role.into(),
        content: Some(content.into()),
        ..Default::default()
    }
}

fn chat_count(messages: &[ChatCompletionRequestMessage]) -> u64 {
    tokens::chat_prompt_tokens("gpt-4o", messages).0
}

#[test]
fn a_string_input_counts_as_one_user_message() {
    let r = parse(json!({"model": "gpt-4o", "input": "Hello"})).unwrap();
    // The chat count of [{"role": "user", "content": "Hello"}]: what OpenAI reports.
    assert_eq!(r.prompt_tokens, 8);
    assert_eq!(r.input.messages, [msg("user", "Hello")]);
    assert_eq!(
        r.input.items,
        [json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hello"}]})]
    );
    let r =
        parse(json!({"model": "gpt-4o", "input": "Hello", "instructions": "Be brief."})).unwrap();
    assert_eq!(
        r.prompt_tokens,
        chat_count(&[msg("system", "Be brief."), msg("user", "Hello")])
    );
}

#[test]
fn items_count_as_the_chat_messages_they_amount_to() {
    let r = parse(json!({"model": "gpt-4o", "input": [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather in "},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            {"type": "input_text", "text": "Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Let me look.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
            "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2",
            "output": [{"type": "input_text", "text": "noon"}]}]}))
    .unwrap();
    let mut assistant = msg("assistant", "Let me look.");
    assistant.tool_calls = vec![
        FunctionCall {
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        },
        FunctionCall {
            name: "get_time".into(),
            arguments: "{}".into(),
        },
    ];
    let expected = [
        msg("developer", "Use tools."),
        msg("user", "Weather in Paris?"),
        assistant,
        msg("tool", "sunny"),
        msg("tool", "noon"),
    ];
    assert_eq!(r.input.messages, expected);
    assert_eq!(r.prompt_tokens, chat_count(&expected));
    assert_eq!(
        r.input.last_output,
        Some(("get_time".to_owned(), "noon".to_owned()))
    );
    assert_eq!(r.input.items.len(), 8);
}

#[test]
fn echo_defaults_are_openais() {
    let r = parse(json!({"model": "gpt-4o", "input": "Hi"})).unwrap();
    let e = &r.echo;
    assert_eq!(e.instructions, None);
    assert_eq!(e.max_output_tokens, None);
    assert!(e.parallel_tool_calls && e.store);
    assert_eq!((e.temperature, e.top_p, e.top_logprobs), (1.0, 1.0, 0));
    assert_eq!(e.truncation, "disabled");
    assert_eq!(e.tool_choice, json!("auto"));
    assert_eq!(e.metadata, json!({}));
    assert_eq!(
        serde_json::to_value(&e.text).unwrap(),
        json!({"format": {"type": "text"}, "verbosity": "medium"})
    );
    assert_eq!(
        serde_json::to_value(&e.reasoning).unwrap(),
        json!({"effort": null, "summary": null})
    );
    assert!(!r.stream && r.obfuscation);
}

#[test]
fn tools_text_format_and_choice() {
    let strict_schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"], "additionalProperties": false});
    let loose = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let r = parse(json!({"model": "gpt-4o", "input": "Reply in JSON",
        "tools": [
            {"type": "function", "name": "a", "parameters": strict_schema},
            {"type": "function", "name": "b", "parameters": loose, "description": "B"},
            {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "b"},
        "text": {"format": {"type": "json_object"}, "verbosity": "low"}}))
    .unwrap();
    assert_eq!(r.functions.len(), 2);
    assert_eq!(r.tool_choice, ToolChoice::Function("b".into()));
    assert_eq!(r.format, ResponseFormat::JsonObject);
    let tools = serde_json::to_value(&r.echo.tools).unwrap();
    // `strict` left out is true when the schema qualifies.
    assert_eq!(tools[0]["strict"], true);
    assert_eq!(tools[0]["description"], Value::Null);
    assert_eq!(tools[1]["strict"], false);
    assert_eq!(tools[2], json!({"type": "web_search"}));
    assert_eq!(
        serde_json::to_string(&r.echo.text).unwrap(),
        r#"{"format":{"type":"json_object"},"verbosity":"low"}"#
    );
    let r = parse(json!({"model": "gpt-4o", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "city", "schema": {"type": "object"}}}}))
    .unwrap();
    assert!(matches!(r.format, ResponseFormat::JsonSchema { ref name, .. } if name == "city"));
    assert_eq!(
        serde_json::to_string(&r.echo.text.format).unwrap(),
        r#"{"type":"json_schema","description":null,"name":"city","schema":{"type":"object"},"strict":false}"#
    );
}

#[test]
fn validation_errors_name_the_parameter() {
    let tool = json!({"type": "function", "name": "f"});
    let cases = [
        (
            json!({"input": "x"}),
            "model",
            Some("missing_required_parameter"),
        ),
        (
            json!({"model": "m"}),
            "input",
            Some("missing_required_parameter"),
        ),
        (
            json!({"model": 1, "input": "x"}),
            "model",
            Some("invalid_type"),
        ),
        (
            json!({"model": "m", "input": {}}),
            "input",
            Some("invalid_type"),
        ),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input[0].role",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": [{"role": "user"}]}),
            "input[0].content",
            Some("missing_required_parameter"),
        ),
        (
            json!({"model": "m", "input": [{"role": "assistant",
            "content": [{"type": "input_text", "text": "x"}]}]}),
            "input[0].content[0]",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": [{"role": "user",
            "content": [{"type": "output_text", "text": "x"}]}]}),
            "input[0].content[0]",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": [{"type": "telepathy"}]}),
            "input[0].type",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output",
            "call_id": "call_x", "output": "y"}]}),
            "input",
            None,
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "call_id": "c",
            "name": "f", "arguments": "{}"}]}),
            "input",
            None,
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "call_id": "c",
            "name": "f"}]}),
            "input[0].arguments",
            Some("missing_required_parameter"),
        ),
        (
            json!({"model": "m", "input": [{"type": "reasoning", "id": "rs"}]}),
            "input[0].summary",
            Some("missing_required_parameter"),
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 8}),
            "max_output_tokens",
            Some("integer_below_min_value"),
        ),
        (
            json!({"model": "m", "input": "x", "temperature": 3}),
            "temperature",
            Some("decimal_above_max_value"),
        ),
        (
            json!({"model": "m", "input": "x", "top_p": -1}),
            "top_p",
            Some("decimal_below_min_value"),
        ),
        (
            json!({"model": "m", "input": "x", "stream_options": {}}),
            "stream_options",
            None,
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a b"}]}),
            "tools[0].name",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f",
            "strict": true, "parameters": {"type": "object",
                "properties": {"a": {"type": "string"}}}}]}),
            "tools[0].parameters",
            Some("invalid_function_parameters"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "teleport"}]}),
            "tools[0].type",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "tools": [tool],
            "tool_choice": {"type": "function", "name": "g"}}),
            "tool_choice",
            None,
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "required"}),
            "tool_choice",
            None,
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}),
            "input",
            None,
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema",
            "schema": {}}}}),
            "text.format.name",
            Some("missing_required_parameter"),
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "text": {"verbosity": "loud"}}),
            "text.verbosity",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
            "reasoning.effort",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "truncation": "sometimes"}),
            "truncation",
            Some("invalid_value"),
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_gone"}),
            "previous_response_id",
            Some("previous_response_not_found"),
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"k": 1}}),
            "metadata.k",
            Some("invalid_type"),
        ),
        (
            json!({"model": "m", "input": "x", "store": "yes"}),
            "store",
            Some("invalid_type"),
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
            None,
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
            None,
        ),
    ];
    for (body, param, code) in cases {
        let err = parse(body.clone()).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err.kind, "invalid_request_error", "{body}");
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        assert_eq!(err.code, code, "{body}: {}", err.message);
    }
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let err = parse(json!({"model": "m", "input": "x", "metadata": many})).unwrap_err();
    assert_eq!(err.code, Some("object_above_max_properties"));
    let err = parse(
        json!({"model": "m", "input": [{"type": "function_call_output",
        "call_id": "call_x", "output": "y"}]}),
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "No tool call found for function call output with call_id call_x."
    );
}

#[test]
fn a_previous_response_carries_its_messages_and_calls() {
    let prev = Prev {
        messages: vec![msg("user", "Weather?"), {
            let mut m = msg("assistant", "");
            m.content = None;
            m.tool_calls = vec![FunctionCall {
                name: "get_weather".into(),
                arguments: "{}".into(),
            }];
            m
        }],
        calls: vec![("call_1".into(), "get_weather".into())],
        pending: vec!["call_1".into()],
    };
    let lookup = |id: &str| (id == "resp_1").then(|| prev.clone());
    let body = json!({"model": "gpt-4o", "previous_response_id": "resp_1",
        "instructions": "Be brief.",
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]});
    let r = parse_create(body.as_object().unwrap(), &lookup, false).unwrap();
    let mut expected = vec![msg("system", "Be brief.")];
    expected.extend(prev.messages.iter().cloned());
    expected.push(msg("tool", "sunny"));
    assert_eq!(r.prompt_tokens, chat_count(&expected));
    assert_eq!(
        r.input.last_output,
        Some(("get_weather".into(), "sunny".into()))
    );
    // The previous response's call must be answered.
    let body = json!({"model": "gpt-4o", "previous_response_id": "resp_1", "input": "And?"});
    let err = parse_create(body.as_object().unwrap(), &lookup, false).unwrap_err();
    assert_eq!(
        err.message,
        "No tool output found for function call call_1."
    );
    // input is optional with a previous response... but its call is still pending.
    let body = json!({"model": "gpt-4o", "previous_response_id": "resp_1"});
    assert!(parse_create(body.as_object().unwrap(), &lookup, false).is_err());
}

#[test]
fn input_tokens_takes_no_model_or_input() {
    let obj = json!({"input": "Hello"});
    let r = parse_create(obj.as_object().unwrap(), &none, true).unwrap();
    assert_eq!((r.prompt_tokens, r.model.as_str()), (8, "gpt-4o"));
    let obj = json!({"instructions": "Hi"});
    assert!(parse_create(obj.as_object().unwrap(), &none, true).is_ok());
}
