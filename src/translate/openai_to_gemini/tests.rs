//! Unit tests of the OpenAI client → Gemini provider direction.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::names;
use crate::translate::{Direction, ResponseTranslator, StreamTranslate};

fn target(model: &str) -> Target<'_> {
    Target {
        model,
        default_max_tokens: 1024,
    }
}

fn context(status: u32, nonce: u64) -> ResponseContext {
    ResponseContext {
        status,
        created: 7,
        counted_input: 0,
        nonce,
        model: String::new(),
    }
}

fn req_for(v: &Value, model: &str, dialect: Dialect) -> Value {
    let t = translate_request(v.to_string().as_bytes(), &target(model), dialect).unwrap();
    assert_eq!(
        t.headers,
        [(names::CONTENT_LENGTH, Some(t.body.len().to_string()))]
    );
    serde_json::from_slice(&t.body).unwrap()
}

fn req(v: Value) -> Value {
    req_for(&v, "gemini-3-flash-preview", Dialect::GeminiApi)
}

fn refused(v: Value, dialect: Dialect) -> (u32, String, Option<&'static str>) {
    let e = translate_request(v.to_string().as_bytes(), &target("gemini-2.5-pro"), dialect)
        .unwrap_err();
    (e.status, e.message, e.param)
}

fn answer(v: &Value, status: u32) -> Value {
    let out = translate_response(v.to_string().as_bytes(), &context(status, 0xab)).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn system_turns_images_and_settings() {
    let out = req(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=2", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/render"}}]},
            {"role": "user", "content": "And be quick."},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "A cat."}
        ],
        "max_tokens": 100, "max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9,
        "n": 2, "seed": 5, "stop": "END", "presence_penalty": 0.5, "frequency_penalty": -0.5,
        "logprobs": true, "top_logprobs": 3, "stream": true, "user": "u-1", "tool_choice": null,
        "response_format": {"type": "json_object"}
    }));
    assert_eq!(
        out["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}, {"text": "Use tools."}]})
    );
    let contents = out["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 2, "{contents:?}");
    assert_eq!(contents[0]["role"], "user");
    let parts = contents[0]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 5);
    assert_eq!(
        parts[1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        parts[2],
        json!({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2"}})
    );
    assert_eq!(
        parts[3],
        json!({"fileData": {"fileUri": "https://example.com/render"}})
    );
    assert_eq!(parts[4], json!({"text": "And be quick."}));
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"text": "A cat."}]})
    );
    assert_eq!(
        out["generationConfig"],
        json!({"maxOutputTokens": 300, "temperature": 0.2, "topP": 0.9, "candidateCount": 2,
               "seed": 5, "stopSequences": ["END"], "presencePenalty": 0.5,
               "frequencyPenalty": -0.5, "responseLogprobs": true, "logprobs": 3,
               "responseMimeType": "application/json"})
    );
    for absent in ["model", "stream", "user", "toolConfig", "tools"] {
        assert!(out.get(absent).is_none(), "{absent}");
    }
}

#[test]
fn tools_tool_choice_and_schema() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"], "additionalProperties": false,
                        "$defs": {"x": {"type": "integer"}}});
    let base = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "By city",
             "parameters": schema, "strict": true}},
            {"type": "function", "function": {"name": "now"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "strict": true,
                            "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}}
    });
    let out = req(base.clone());
    assert_eq!(
        out["tools"],
        json!([{"functionDeclarations": [
            {"name": "weather", "description": "By city", "parametersJsonSchema": schema},
            {"name": "now"}]}])
    );
    assert_eq!(
        out["generationConfig"]["responseJsonSchema"]["properties"]["t"]["type"],
        "number"
    );
    assert_eq!(
        out["generationConfig"]["responseMimeType"],
        "application/json"
    );
    let with = |choice: Value| {
        let mut r = base.clone();
        r["tool_choice"] = choice;
        req(r)["toolConfig"]["functionCallingConfig"].clone()
    };
    assert_eq!(with(json!("none")), json!({"mode": "NONE"}));
    assert_eq!(with(json!("auto")), json!({"mode": "AUTO"}));
    assert_eq!(with(json!("required")), json!({"mode": "ANY"}));
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "now"}})),
        json!({"mode": "ANY", "allowedFunctionNames": ["now"]})
    );
    assert_eq!(
        with(
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto",
            "tools": [{"type": "function", "function": {"name": "weather"}}]}})
        ),
        json!({"mode": "VALIDATED", "allowedFunctionNames": ["weather"]})
    );
    assert_eq!(
        with(
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "required",
            "tools": [{"type": "function", "function": {"name": "now"}}]}})
        ),
        json!({"mode": "ANY", "allowedFunctionNames": ["now"]})
    );
    let (status, _, param) = refused(
        json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}),
        Dialect::GeminiApi,
    );
    assert_eq!((status, param), (400, Some("tool_choice")));
    let (status, message, param) = refused(
        json!({"messages": [{"role": "user", "content": "x"}],
               "tools": [{"type": "custom", "custom": {"name": "grammar"}}]}),
        Dialect::GeminiApi,
    );
    assert_eq!((status, param), (400, Some("tools")));
    assert!(message.contains("'custom'"), "{message}");
}

#[test]
fn reasoning_effort_by_model() {
    let effort = |model: &str, e: &str| {
        let r = json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": e});
        req_for(&r, model, Dialect::GeminiApi)["generationConfig"]["thinkingConfig"].clone()
    };
    assert_eq!(
        effort("gemini-2.5-flash", "none"),
        json!({"thinkingBudget": 0})
    );
    assert_eq!(
        effort("gemini-2.5-flash", "low"),
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(effort("gemini-2.5-pro", "medium")["thinkingBudget"], 8192);
    assert_eq!(effort("gemini-2.5-pro", "high")["thinkingBudget"], 24576);
    assert_eq!(
        effort("gemini-3-flash-preview", "none"),
        json!({"thinkingLevel": "minimal", "includeThoughts": true})
    );
    assert_eq!(
        effort("gemini-3-flash-preview", "medium")["thinkingLevel"],
        "medium"
    );
    assert_eq!(
        effort("gemini-3-pro-preview", "minimal")["thinkingLevel"],
        "low"
    );
    assert_eq!(
        effort("gemini-3-pro-preview", "medium")["thinkingLevel"],
        "high"
    );
    assert_eq!(
        effort("gemini-3.1-pro-preview", "medium")["thinkingLevel"],
        "medium"
    );
    assert_eq!(
        effort("gemini-3.1-pro-preview", "high")["thinkingLevel"],
        "high"
    );
    let (status, _, param) = refused(
        json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
        Dialect::GeminiApi,
    );
    assert_eq!((status, param), (400, Some("reasoning_effort")));
}

#[test]
fn refusals_name_their_parameter() {
    let user = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
    for (body, dialect, param, says) in [
        (
            json!({"model": "x"}),
            Dialect::GeminiApi,
            "messages",
            "Missing required",
        ),
        (
            json!({"messages": []}),
            Dialect::GeminiApi,
            "messages",
            "at least one",
        ),
        (
            json!({"messages": [{"role": "system", "content": "only"}]}),
            Dialect::GeminiApi,
            "messages",
            "at least one",
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            Dialect::GeminiApi,
            "messages",
            "unknown message role",
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])),
            Dialect::GeminiApi,
            "messages",
            "data:, https:",
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}])),
            Dialect::GeminiApi,
            "messages",
            "base64",
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "https://x.test/render"}}])),
            Dialect::VertexAi,
            "messages",
            "Vertex AI needs",
        ),
        (
            user(json!([{"type": "file", "file": {"file_id": "file-1"}}])),
            Dialect::GeminiApi,
            "messages",
            "file ids",
        ),
        (
            user(json!([{"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}])),
            Dialect::GeminiApi,
            "messages",
            "wav",
        ),
        (
            user(json!([{"type": "video", "video": {}}])),
            Dialect::GeminiApi,
            "messages",
            "'video'",
        ),
        (
            json!({"messages": [{"role": "tool", "tool_call_id": "call_9", "content": "x"}]}),
            Dialect::GeminiApi,
            "messages",
            "'call_9' answers no earlier",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "[1]"}}]}]}),
            Dialect::GeminiApi,
            "messages",
            "JSON object",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "grammar"}}),
            Dialect::GeminiApi,
            "response_format",
            "json_schema",
        ),
    ] {
        let e = translate_request(
            body.to_string().as_bytes(),
            &target("gemini-2.5-pro"),
            dialect,
        )
        .unwrap_err();
        assert_eq!((e.status, e.param), (400, Some(param)), "{body}");
        assert!(e.message.contains(says), "{body}: {}", e.message);
    }
    let e = translate_request(b"{not json", &target("m"), Dialect::GeminiApi).unwrap_err();
    assert_eq!(e.code, "invalid_json");
}

#[test]
fn audio_and_pdf_parts_go_inline() {
    let out = req(json!({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.PDF"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/doc.pdf"}}]}]}));
    assert_eq!(
        out["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}}])
    );
}

/// A Gemini 3 answer with two parallel calls, the first carrying the step's signature.
fn parallel_calls() -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE+Lw=="},
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "totalTokenCount": 70,
                          "thoughtsTokenCount": 18},
        "modelVersion": "gemini-3-flash-preview",
        "responseId": "resp-1"
    })
}

/// The next request an OpenAI client sends: the assistant message as it came, the two results
/// (in the other order), and a follow-up.
fn next_request(message: &Value) -> Value {
    let ids: Vec<&str> = message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    json!({"messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        message,
        {"role": "tool", "tool_call_id": ids[1], "content": "24C"},
        {"role": "tool", "tool_call_id": ids[0], "content": [{"type": "text", "text": "18C"}]},
        {"role": "user", "content": "Thanks."}
    ]})
}

#[test]
fn thought_signature_round_trips_through_the_tool_call_id() {
    let out = answer(&parallel_calls(), 200);
    let message = &out["choices"][0]["message"];
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], Value::Null);
    let first = message["tool_calls"][0]["id"].as_str().unwrap();
    let second = message["tool_calls"][1]["id"].as_str().unwrap();
    // The signature in base64url, so the id keeps to [A-Za-z0-9_-].
    assert_eq!(first, "call_00000000000000ab_0_0__thought__c2lnLTE-Lw");
    assert_eq!(second, "call_00000000000000ab_0_1");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    let next = req(next_request(message));
    let contents = next["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 4, "{contents:?}");
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [
            {"functionCall": {"id": "call_00000000000000ab_0_0", "name": "weather", "args": {"city": "Paris"}},
             "thoughtSignature": "c2lnLTE+Lw=="},
            {"functionCall": {"id": "call_00000000000000ab_0_1", "name": "weather", "args": {"city": "Rome"}}}]})
    );
    // The results alone in their turn, in the calls' order, then the user's text.
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"id": "call_00000000000000ab_0_0", "name": "weather", "response": {"output": "18C"}}},
            {"functionResponse": {"id": "call_00000000000000ab_0_1", "name": "weather", "response": {"output": "24C"}}}]})
    );
    assert_eq!(
        contents[3],
        json!({"role": "user", "parts": [{"text": "Thanks."}]})
    );
    // Vertex AI: no ids, the same order and signature.
    let vertex = req_for(
        &next_request(message),
        "gemini-3-pro-preview",
        Dialect::VertexAi,
    );
    assert_eq!(
        vertex["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE+Lw=="})
    );
    assert_eq!(
        vertex["contents"][2]["parts"],
        json!([{"functionResponse": {"name": "weather", "response": {"output": "18C"}}},
               {"functionResponse": {"name": "weather", "response": {"output": "24C"}}}])
    );
}

#[test]
fn gemini_call_ids_and_foreign_history() {
    let mut answer_with_id = parallel_calls();
    answer_with_id["candidates"][0]["content"]["parts"][0]["functionCall"]["id"] = json!("g-1");
    let out = answer(&answer_with_id, 200);
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["id"],
        "g-1__thought__c2lnLTE-Lw"
    );
    // History another model made: the step's first call gets Google's placeholder signature;
    // a signature echoed in `extra_content` (Google's own OpenAI layer) is taken.
    let out = req(json!({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "1"},
        {"role": "tool", "tool_call_id": "call_b", "content": "2"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"},
             "extra_content": {"google": {"thought_signature": "ZXh0cmE="}}}]},
        {"role": "tool", "tool_call_id": "call_c", "content": "3"}
    ]}));
    let model = &out["contents"][1]["parts"];
    assert_eq!(model[0], json!({"text": "Checking."}));
    assert_eq!(model[1]["thoughtSignature"], FOREIGN_SIGNATURE);
    assert_eq!(model[1]["functionCall"]["args"], json!({}));
    assert!(model[2].get("thoughtSignature").is_none());
    assert_eq!(
        out["contents"][3]["parts"][0]["thoughtSignature"],
        "ZXh0cmE="
    );
    assert_eq!(out["contents"].as_array().unwrap().len(), 5);
}

#[test]
fn candidates_reasoning_usage_and_logprobs() {
    let out = answer(
        &json!({
            "candidates": [
                {"content": {"role": "model", "parts": [
                    {"text": "Let me think.", "thought": true},
                    {"text": "Hello", "thoughtSignature": "dGV4dA=="}, {"text": " there"}]},
                 "finishReason": "STOP", "index": 0,
                 "logprobsResult": {"topCandidates": [{"candidates": [
                     {"token": "Hello", "logProbability": -0.1}, {"token": "Hi", "logProbability": -2.5}]}],
                     "chosenCandidates": [{"token": "Hello", "logProbability": -0.1}]}},
                {"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "MAX_TOKENS", "index": 1}],
            "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
                "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "toolUsePromptTokenCount": 5,
                "totalTokenCount": 155},
            "modelVersion": "gemini-2.5-flash"
        }),
        200,
    );
    assert_eq!(out["id"], "chatcmpl-00000000000000ab");
    assert_eq!(out["model"], "gemini-2.5-flash");
    assert_eq!(out["created"], 7);
    let c0 = &out["choices"][0];
    assert_eq!(c0["message"]["content"], "Hello there");
    assert_eq!(c0["message"]["reasoning_content"], "Let me think.");
    assert_eq!(c0["finish_reason"], "stop");
    assert_eq!(
        c0["logprobs"]["content"][0],
        json!({"token": "Hello", "logprob": -0.1, "bytes": [72, 101, 108, 108, 111],
               "top_logprobs": [{"token": "Hello", "logprob": -0.1, "bytes": [72, 101, 108, 108, 111]},
                                {"token": "Hi", "logprob": -2.5, "bytes": [72, 105]}]})
    );
    assert_eq!(out["choices"][1]["finish_reason"], "length");
    assert_eq!(out["choices"][1]["logprobs"], Value::Null);
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 105, "completion_tokens": 50, "total_tokens": 155,
               "prompt_tokens_details": {"cached_tokens": 60},
               "completion_tokens_details": {"reasoning_tokens": 30}})
    );
}

#[test]
fn finish_reasons() {
    for (gemini, openai) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MODEL_ARMOR", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("SOMETHING_NEW", "stop"),
    ] {
        assert_eq!(finish_reason(gemini, false), openai, "{gemini}");
    }
    assert_eq!(finish_reason("STOP", true), "tool_calls");
    assert_eq!(finish_reason("MAX_TOKENS", true), "length");
    let blocked = answer(
        &json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}),
        200,
    );
    assert_eq!(blocked["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(blocked["usage"]["prompt_tokens"], 9);
    let nothing = answer(&json!({"responseId": "r"}), 200);
    assert_eq!(nothing["id"], "r");
    assert_eq!(nothing["choices"][0]["finish_reason"], "stop");
    assert!(nothing.get("usage").is_none());
}

#[test]
fn errors_keep_their_status() {
    for (status, google, want, kind) in [
        (400, "INVALID_ARGUMENT", 400, "invalid_request_error"),
        (400, "FAILED_PRECONDITION", 400, "invalid_request_error"),
        (401, "UNAUTHENTICATED", 401, "authentication_error"),
        (403, "PERMISSION_DENIED", 403, "permission_error"),
        (404, "NOT_FOUND", 404, "invalid_request_error"),
        (429, "RESOURCE_EXHAUSTED", 429, "requests"),
        (500, "INTERNAL", 500, "server_error"),
        (503, "UNAVAILABLE", 503, "server_error"),
        (504, "DEADLINE_EXCEEDED", 504, "server_error"),
        (418, "", 418, "invalid_request_error"),
        (200, "", 502, "server_error"),
    ] {
        let body = json!({"error": {"code": status, "message": "boom", "status": google}});
        let e = translate_error(&body, status);
        assert_eq!((e.status, e.kind), (want, kind), "{google}");
        assert_eq!(e.message, "boom");
        let out = answer(&body, status);
        assert_eq!(out["error"]["type"], kind);
        assert_eq!(out["error"]["message"], "boom");
    }
    assert_eq!(
        translate_error(&json!({"error": {"code": 429}}), 500).code,
        "rate_limit_exceeded"
    );
    // An array of answers (a stream read as JSON) with an error, and an error at 200.
    let wrapped = json!([{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}]);
    assert_eq!(answer(&wrapped, 400)["error"]["message"], "bad");
    assert_eq!(answer(&wrapped[0], 200)["error"]["code"], "invalid_request");
    // JSON that is not an error at an error status; and a body that is not JSON passes.
    assert_eq!(
        answer(&json!({"oops": 1}), 503)["error"]["code"],
        "provider_unavailable"
    );
    assert!(translate_response(b"<html>502</html>", &context(502, 0)).is_none());
}

/// A Gemini 3 stream: thoughts, text, then a call with its signature, usage on every event.
const STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Planning.\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 50,\"totalTokenCount\": 50,\"trafficType\": \"ON_DEMAND\"},\"modelVersion\": \"gemini-3-flash-preview\",\"responseId\": \"r-9\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Let me \"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 50,\"candidatesTokenCount\": 2,\"totalTokenCount\": 60,\"thoughtsTokenCount\": 8},\"modelVersion\": \"gemini-3-flash-preview\",\"responseId\": \"r-9\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"check.\"},{\"functionCall\": {\"name\": \"weather\",\"args\": {\"city\": \"Paris\"}},\"thoughtSignature\": \"c2ln\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-3-flash-preview\",\"responseId\": \"r-9\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 50,\"cachedContentTokenCount\": 20,\"candidatesTokenCount\": 9,\"totalTokenCount\": 71,\"thoughtsTokenCount\": 12},\"modelVersion\": \"gemini-3-flash-preview\",\"responseId\": \"r-9\"}\r\n\r\n";

/// Feed `chunks` through the response translator as the filter does.
fn translate(chunks: &[&[u8]]) -> String {
    let mut t = ResponseTranslator::new(
        Direction::OpenaiToGemini(Dialect::GeminiApi),
        "text/event-stream",
        context(200, 1),
    );
    let out: Vec<u8> = chunks.iter().flat_map(|c| t.chunk(c)).collect();
    String::from_utf8(out).unwrap()
}

fn events(out: &str) -> Vec<Value> {
    out.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap();
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into()))
        })
        .collect()
}

#[test]
fn stream_translates_to_chunks() {
    let out = events(&translate(&[STREAM.as_bytes()]));
    assert_eq!(out.last().unwrap(), &json!("[DONE]"));
    let chunks = &out[..out.len() - 1];
    assert!(chunks.iter().all(|c| c["id"] == "r-9"
        && c["object"] == "chat.completion.chunk"
        && c["model"] == "gemini-3-flash-preview"
        && c["created"] == 7));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["reasoning_content"],
        "Planning."
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Let me check.");
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(
        calls,
        [
            &json!([{"index": 0, "id": "call_0000000000000001_0_0__thought__c2ln", "type": "function",
                  "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}])
        ]
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0].get("finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("tool_calls")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 50, "completion_tokens": 21, "total_tokens": 71,
               "prompt_tokens_details": {"cached_tokens": 20},
               "completion_tokens_details": {"reasoning_tokens": 12}})
    );
}

#[test]
fn stream_split_at_every_byte_translates_the_same() {
    let whole = translate(&[STREAM.as_bytes()]);
    let bytes = STREAM.as_bytes();
    for cut in 1..bytes.len() {
        assert_eq!(
            translate(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(translate(&singles), whole);
}

#[test]
fn stream_two_candidates_blocked_prompt_and_errors() {
    let mut s = translate_stream(&context(200, 2));
    let two = |a: Value, b: Value| json!({"candidates": [a, b]}).to_string();
    let first = s.event(
        "",
        two(
            json!({"content": {"parts": [{"text": "A"}]}, "index": 0}),
            json!({"content": {"parts": [{"text": "B"}]}, "index": 1}),
        )
        .as_bytes(),
    );
    assert_eq!(events(&first).len(), 4, "{first}");
    let end = s.event(
        "",
        two(
            json!({"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP", "index": 0}),
            json!({"finishReason": "MAX_TOKENS", "index": 1}),
        )
        .as_bytes(),
    );
    assert!(end.ends_with("data: [DONE]\n\n"));
    let end = events(&end);
    assert_eq!(end[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(end[2]["choices"][0]["index"], 1);
    assert_eq!(end[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(
        end.last().unwrap(),
        &json!("[DONE]"),
        "no usage came, no usage chunk"
    );
    assert!(s.finished());
    assert_eq!(s.event("", two(json!({}), json!({})).as_bytes()), "");

    let mut s = translate_stream(&context(200, 3));
    let out = events(&s.event("", br#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 4}}"#));
    assert_eq!(out[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(out[0]["id"], "chatcmpl-0000000000000003");
    assert_eq!(out[1]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out[2]["usage"]["prompt_tokens"], 4);
    assert_eq!(out[3], json!("[DONE]"));

    let mut s = translate_stream(&context(200, 4));
    assert_eq!(s.event("", b"not json"), "");
    assert_eq!(
        s.event("", br#"{"usageMetadata": {"promptTokenCount": 4}}"#),
        ""
    );
    let out = events(&s.event("", br#"{"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}"#));
    assert_eq!(
        out,
        [
            json!({"error": {"message": "Resource exhausted", "type": "requests",
                                      "param": null, "code": "rate_limit_exceeded"}})
        ]
    );
    assert!(s.finished());
}

/// A piece of a Gemini event, for the property tests.
fn gemini_event() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "[a-z \"\\\\]{0,12}".prop_map(|t| json!({"text": t})),
        any::<bool>().prop_map(|t| json!({"text": "th", "thought": t})),
        ("[a-z]{0,4}", proptest::option::of("[a-zA-Z0-9+/=]{0,8}")).prop_map(|(n, s)| {
            json!({"functionCall": {"name": n, "args": {"a": 1}}, "thoughtSignature": s})
        }),
        Just(json!({"functionCall": "oops"})),
        Just(json!(null)),
    ];
    let reason = proptest::option::of(prop_oneof![
        Just("STOP"),
        Just("MAX_TOKENS"),
        Just("SAFETY"),
        Just(""),
        Just("NEW")
    ]);
    let index = proptest::option::of(prop_oneof![
        0u64..3,
        Just(63u64),
        Just(64u64),
        Just(u64::MAX)
    ]);
    let candidate = (proptest::collection::vec(part, 0..3), reason, index).prop_map(
        |(parts, r, i)| json!({"content": {"parts": parts}, "finishReason": r, "index": i}),
    );
    let usage = proptest::option::of((any::<u64>(), 0u64..100, any::<i64>()).prop_map(|(p, c, t)| {
        json!({"promptTokenCount": p, "candidatesTokenCount": c, "thoughtsTokenCount": t})
    }));
    prop_oneof![
        8 => (proptest::collection::vec(candidate, 0..3), usage, any::<bool>()).prop_map(|(c, u, blocked)| {
            let mut e = json!({"candidates": c, "usageMetadata": u, "responseId": "r"});
            if blocked {
                e["promptFeedback"] = json!({"blockReason": "SAFETY"});
            }
            e.to_string()
        }),
        1 => Just(r#"{"error": {"code": 500, "status": "INTERNAL"}}"#.to_string()),
        1 => "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes, in any pieces, never panic.
    #[test]
    fn stream_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let cut = cut.min(bytes.len());
        let _ = translate(&[&bytes[..cut], &bytes[cut..]]);
    }

    /// Gemini-shaped events translate the same in any pieces, into well-formed chunk events with
    /// at most one `[DONE]`, last.
    #[test]
    fn stream_is_the_same_at_any_split(
        events_in in proptest::collection::vec(gemini_event(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let stream: String = events_in.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
        let bytes = stream.as_bytes();
        let whole = translate(&[bytes]);
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for c in at {
            pieces.push(&bytes[from..c]);
            from = c;
        }
        pieces.push(&bytes[from..]);
        prop_assert_eq!(translate(&pieces), whole.clone());
        let out = events(&whole);
        let done = out.iter().filter(|e| **e == json!("[DONE]")).count();
        prop_assert!(done <= 1);
        if done == 1 {
            prop_assert_eq!(out.last(), Some(&json!("[DONE]")));
        }
        prop_assert!(out.iter().all(|e| e.is_object() || *e == json!("[DONE]")));
    }
}
