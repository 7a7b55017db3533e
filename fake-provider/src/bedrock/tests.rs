//! Converse request parsing and Bedrock's error shape.

use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<ConverseRequest, Error> {
    parse_converse(v.to_string().as_bytes())
}

#[test]
fn reads_the_inference_and_tool_config() {
    let r = parse(json!({
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Weather?"},
            {"image": {"format": "jpeg", "source": {"bytes": "AAAA"}}}, {"cachePoint": {"type": "default"}}]}],
        "inferenceConfig": {"maxTokens": 7, "stopSequences": ["END"], "temperature": 1},
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}},
            {"cachePoint": {"type": "default"}}], "toolChoice": {"tool": {"name": "get_weather"}}},
        "additionalModelRequestFields": {"top_k": 5}}))
    .unwrap();
    assert_eq!(r.max_tokens, Some(7));
    assert_eq!(r.stop_sequences, ["END"]);
    assert_eq!(r.tools.len(), 1);
    assert_eq!(r.tools[0].name, "get_weather");
    assert_eq!(r.tool_choice, ToolChoice::Tool("get_weather".into()));
    assert!(!r.answers_tool_results);
    assert_eq!(r.prompt_tokens, count("Weather?") + count("Be brief."));
}

#[test]
fn constraint_messages() {
    let msgs = json!([{"role": "user", "content": [{"text": "a"}]}]);
    let cases = [
        (json!({"messages": msgs, "inferenceConfig": {"temperature": 1.5}}),
            "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"),
        (json!({"messages": msgs, "inferenceConfig": {"stopSequences": [""]}}),
            "1 validation error detected: Value '' at 'inferenceConfig.stopSequences.0.member' failed to satisfy constraint: Member must have length greater than or equal to 1"),
        (json!({"messages": msgs, "toolConfig": {"tools": []}}),
            "1 validation error detected: Value '[]' at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1"),
        (json!({"messages": msgs, "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}], "toolChoice": {"tool": {"name": "g"}}}}),
            "The tool g in toolConfig.toolChoice is not one of the tools in toolConfig.tools."),
    ];
    for (body, message) in cases {
        let err = parse(body.clone()).unwrap_err();
        assert_eq!(
            (err.status, err.code.as_str()),
            (StatusCode::BAD_REQUEST, "ValidationException"),
            "{body}"
        );
        assert_eq!(err.message, message, "{body}");
    }
}

#[test]
fn tool_results_answer_the_previous_tool_uses() {
    let tools = json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]});
    let r = parse(json!({"toolConfig": tools, "messages": [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}, {"toolUse": {"toolUseId": "t2", "name": "f", "input": {"x": 1}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t2", "content": [{"text": "two"}]}}, {"toolResult": {"toolUseId": "t1", "content": [], "status": "error"}}]}]}))
    .unwrap();
    assert!(r.answers_tool_results);
    let err = parse(json!({"toolConfig": tools, "messages": [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t7", "content": []}}]}]}))
    .unwrap_err();
    assert!(
        err.message
            .contains("unexpected `toolUseId` found in `toolResult` blocks: t7"),
        "{}",
        err.message
    );
    let err = parse(json!({"toolConfig": tools, "messages": [
        {"role": "user", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]}]}))
    .unwrap_err();
    assert!(
        err.message
            .contains("toolUse blocks belong in assistant messages"),
        "{}",
        err.message
    );
}

#[test]
fn model_ids() {
    for ok in [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
        "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/amazon.titan-text-express-v1",
    ] {
        assert_eq!(check_model_id(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "a/b",
        "arn:aws:s3:::bucket/x",
        "arn:aws:bedrock:us-east-1:1:no-slash",
        "with space",
    ] {
        assert!(check_model_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn errors_have_bedrocks_shape() {
    let err = Error::simulated(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.code, "ThrottlingException");
    assert_eq!(err.stream_member(), "throttlingException");
    assert_eq!(
        Error::named("ModelNotReadyException").status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(Error::named("ModelErrorException").status.as_u16(), 424);
    assert_eq!(
        Error::simulated(StatusCode::BAD_GATEWAY).code,
        "InternalServerException"
    );
    let resp = Error::validation("bad").response("0c1b2a3d-aaaa-4bbb-accc-000000000000");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    );
    assert_eq!(
        resp.headers()["x-amzn-requestid"],
        "0c1b2a3d-aaaa-4bbb-accc-000000000000"
    );
    let sig = Error::new(403, "InvalidSignatureException", "x").response("id");
    assert_eq!(
        sig.headers()["x-amzn-errortype"],
        "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
    );
}
