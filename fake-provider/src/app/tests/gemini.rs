//! The Gemini API (`models/{model}:generateContent` / `:streamGenerateContent`), through the
//! real router.

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{o200k_len, post_with, send, send_to, Reply};
use crate::app::{router, Clouds, Config};

const KEY: (&str, &str) = ("x-goog-api-key", "AIza-test-key");

fn path(model: &str, method: &str) -> String {
    format!("/v1beta/models/{model}:{method}")
}

async fn generate(body: &Value, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![KEY];
    headers.extend_from_slice(extra);
    send(post_with(
        &path("gemini-2.5-flash", "generateContent"),
        body,
        &headers,
    ))
    .await
}

async fn stream(body: &Value, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![KEY];
    headers.extend_from_slice(extra);
    send(post_with(
        &format!(
            "{}?alt=sse",
            path("gemini-2.5-flash", "streamGenerateContent")
        ),
        body,
        &headers,
    ))
    .await
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})
}

fn weather_tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "OBJECT",
            "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}},
        {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {"tz": {"type": "string"}}, "additionalProperties": false}}]}])
}

/// The events of a Gemini SSE body: `data: JSON` separated by `\r\n\r\n`.
fn events(r: &Reply) -> Vec<Value> {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), "text/event-stream");
    let text = std::str::from_utf8(&r.body).unwrap();
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    text.strip_suffix("\r\n\r\n")
        .unwrap()
        .split("\r\n\r\n")
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"));
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

fn assert_google_error(r: &Reply, code: u16, status: &str, message: &str) {
    assert_eq!(
        r.status.as_u16(),
        code,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), "application/json; charset=UTF-8");
    let v = r.json();
    assert_eq!(v["error"]["code"], code);
    assert_eq!(v["error"]["status"], status);
    assert_eq!(v["error"]["message"], message, "{v}");
}

#[tokio::test]
async fn generate_content_answers_with_usage_metadata() {
    let r = generate(&hello(), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json; charset=UTF-8");
    assert_eq!(r.header("x-fake-received-model"), "gemini-2.5-flash");
    let v = r.json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(o200k_len(text), 16);
    let id = v["responseId"].as_str().unwrap();
    assert_eq!(id.len(), 23);
    let prompt = o200k_len("Hello");
    assert_eq!(
        v,
        json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": 16, "totalTokenCount": prompt + 16,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]},
            "modelVersion": "gemini-2.5-flash", "responseId": id})
    );
    // The system instruction counts; the key may come as `?key=`.
    let mut body = hello();
    body["systemInstruction"] = json!({"parts": [{"text": "Be brief."}]});
    let r = send(post_with(
        &format!(
            "{}?key=AIza-other",
            path("gemini-2.5-flash", "generateContent")
        ),
        &body,
        &[],
    ))
    .await;
    assert_eq!(
        r.json()["usageMetadata"]["promptTokenCount"],
        prompt + o200k_len("Be brief.")
    );
    assert!(r
        .header("x-fake-received-path")
        .ends_with(&format!("?key={}", super::fp("AIza-other"))));
}

#[tokio::test]
async fn api_keys() {
    let r = send(post_with(
        &path("gemini-2.5-flash", "generateContent"),
        &hello(),
        &[],
    ))
    .await;
    assert_google_error(&r, 403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
    let app = || {
        router(Config {
            clouds: Clouds {
                gemini_api_key: Some("AIza-test-key".into()),
                ..Default::default()
            },
            ..Default::default()
        })
    };
    let r = send_to(
        app(),
        post_with(
            &path("gemini-2.5-flash", "generateContent"),
            &hello(),
            &[("x-goog-api-key", "AIza-wrong")],
        ),
    )
    .await;
    assert_google_error(
        &r,
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
    );
    assert_eq!(r.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    let r = send_to(
        app(),
        post_with(
            &path("gemini-2.5-flash", "generateContent"),
            &hello(),
            &[KEY],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn generation_config() {
    let mut body = hello();
    body["generationConfig"] =
        json!({"maxOutputTokens": 4, "candidateCount": 2, "temperature": 1.0});
    let v = generate(&body, &[]).await.json();
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["content"]["parts"][0]["text"], "The quick brown fox");
    assert_eq!(c[1]["content"]["parts"][0]["text"], "The brown fox jumps");
    assert_eq!(
        (c[0]["index"].clone(), c[1]["index"].clone()),
        (json!(0), json!(1))
    );
    assert!(c.iter().all(|c| c["finishReason"] == "MAX_TOKENS"));
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 8);
    body["generationConfig"] = json!({"stopSequences": [" brown"]});
    let v = generate(&body, &[]).await.json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "The quick"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    // Cached tokens are part of the prompt.
    let v = generate(&hello(), &[("x-fake-cached-tokens", "1")])
        .await
        .json();
    assert_eq!(v["usageMetadata"]["cachedContentTokenCount"], 1);
    assert_eq!(v["usageMetadata"]["promptTokenCount"], o200k_len("Hello"));
}

#[tokio::test]
async fn json_output_follows_the_schema() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city", "days"]});
    let mut body = hello();
    body["generationConfig"] =
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema});
    let v = generate(&body, &[]).await.json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    let instance: Value = serde_json::from_str(text).unwrap();
    assert!(jsonschema::is_valid(&schema, &instance), "{instance}");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], o200k_len(text));
    // The OpenAPI `responseSchema`, upper-case types.
    body["generationConfig"] = json!({"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}, "required": ["ok"]}});
    let v = generate(&body, &[]).await.json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"ok": true})
    );
    // JSON without a schema.
    body["generationConfig"] = json!({"responseMimeType": "application/json"});
    let v = generate(&body, &[("x-fake-completion-tokens", "2")])
        .await
        .json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"answer": "The quick"})
    );
}

#[tokio::test]
async fn function_calls_round_trip() {
    let mut body = hello();
    body["tools"] = weather_tools();
    let r = generate(&body, &[("x-fake-tool-call", "get_weather")]).await;
    let v = r.json();
    let c = &v["candidates"][0];
    assert_eq!(
        c["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "fake", "unit": "celsius"}}}])
    );
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["finishMessage"], "Model generated function call(s).");
    assert_eq!(
        v["usageMetadata"]["candidatesTokenCount"],
        o200k_len("get_weather") + o200k_len(r#"{"city":"fake","unit":"celsius"}"#)
    );
    // Mode ANY calls the allowed function; NONE calls none.
    body["toolConfig"] =
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}});
    let v = generate(&body, &[]).await.json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "get_time", "args": {"tz": "fake"}})
    );
    body["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
    let v = generate(&body, &[("x-fake-tool-call", "get_weather")])
        .await
        .json();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());
    // The response handed back gets text.
    let body = json!({"tools": weather_tools(), "contents": [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}]}]});
    let v = generate(&body, &[("x-fake-tool-call", "get_weather")])
        .await
        .json();
    assert!(
        v["candidates"][0]["content"]["parts"][0]["text"].is_string(),
        "{v}"
    );
    let expected: u64 = [
        "Weather in Paris?",
        "get_weather",
        r#"{"city":"Paris"}"#,
        "get_weather",
        r#"{"sky":"clear"}"#,
    ]
    .iter()
    .map(|s| o200k_len(s))
    .sum();
    assert_eq!(v["usageMetadata"]["promptTokenCount"], expected);
}

#[tokio::test]
async fn thinking_and_thought_signatures() {
    let mut body = hello();
    body["generationConfig"] =
        json!({"thinkingConfig": {"includeThoughts": true}, "maxOutputTokens": 100});
    let v = generate(
        &body,
        &[
            ("x-fake-reasoning-tokens", "10"),
            ("x-fake-completion-tokens", "3"),
        ],
    )
    .await
    .json();
    let parts = v["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["thought"], true);
    assert_eq!(parts[1]["text"], "The quick brown");
    let sig = parts[1]["thoughtSignature"].as_str().unwrap();
    assert!(base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap()
        .starts_with(crate::gemini::SIGNATURE_PREFIX));
    let prompt = o200k_len("Hello");
    assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 10);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], prompt + 3 + 10);
    // A budget of 0 turns thinking off; thinking spends the output limit first.
    body["generationConfig"] = json!({"thinkingConfig": {"thinkingBudget": 0}});
    let v = generate(&body, &[("x-fake-reasoning-tokens", "10")])
        .await
        .json();
    assert!(v["usageMetadata"].get("thoughtsTokenCount").is_none());
    assert!(v["candidates"][0]["content"]["parts"][0]
        .get("thoughtSignature")
        .is_none());
    body["generationConfig"] = json!({"maxOutputTokens": 10});
    let v = generate(&body, &[("x-fake-reasoning-tokens", "10")])
        .await
        .json();
    assert_eq!(
        v["candidates"][0],
        json!({"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0})
    );
    assert!(v["usageMetadata"].get("candidatesTokenCount").is_none());
    // Gemini 3 signs its function calls, and wants the signature back.
    let mut body = hello();
    body["tools"] = weather_tools();
    let r = send(post_with(
        &path("gemini-3-pro-preview", "generateContent"),
        &body,
        &[KEY, ("x-fake-tool-call", "get_weather")],
    ))
    .await;
    let part = r.json()["candidates"][0]["content"]["parts"][0].clone();
    let sig = part["thoughtSignature"].as_str().unwrap().to_owned();
    let turn = |signature: Option<&str>| {
        let mut call = json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}});
        if let Some(s) = signature {
            call["thoughtSignature"] = json!(s);
        }
        json!({"tools": weather_tools(), "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}]}]})
    };
    let url = path("gemini-3-pro-preview", "generateContent");
    assert_eq!(
        send(post_with(&url, &turn(Some(&sig)), &[KEY]))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(post_with(
            &url,
            &turn(Some("skip_thought_signature_validator")),
            &[KEY]
        ))
        .await
        .status,
        StatusCode::OK
    );
    let r = send(post_with(&url, &turn(None), &[KEY])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Function call is missing a thought_signature in functionCall parts."));
    let r = send(post_with(&url, &turn(Some("AAAA")), &[KEY])).await;
    assert_google_error(&r, 400, "INVALID_ARGUMENT", "Corrupted thought signature.");
    // Gemini 2.5 does not check.
    assert_eq!(generate(&turn(None), &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn streams_are_sse_with_cumulative_usage() {
    let got = events(&stream(&hello(), &[("x-fake-completion-tokens", "3")]).await);
    assert_eq!(got.len(), 3);
    let prompt = o200k_len("Hello");
    let text: String = got
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "The quick brown");
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e["usageMetadata"]["candidatesTokenCount"], i + 1);
        assert_eq!(e["usageMetadata"]["totalTokenCount"], prompt + i as u64 + 1);
        assert_eq!(e["candidates"][0]["content"]["role"], "model");
        assert_eq!(e["modelVersion"], "gemini-2.5-flash");
        assert_eq!(e["responseId"], got[0]["responseId"]);
    }
    assert!(got[..2]
        .iter()
        .all(|e| e["candidates"][0].get("finishReason").is_none()));
    assert_eq!(got[2]["candidates"][0]["finishReason"], "STOP");
    // A function call comes whole in one event.
    let mut body = hello();
    body["tools"] = weather_tools();
    let calls = events(&stream(&body, &[("x-fake-tool-call", "get_weather")]).await);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    // Without alt=sse: one JSON array of the chunks.
    let r = send(post_with(
        &path("gemini-2.5-flash", "streamGenerateContent"),
        &hello(),
        &[KEY, ("x-fake-completion-tokens", "2")],
    ))
    .await;
    assert_eq!(r.header("content-type"), "application/json; charset=UTF-8");
    let chunks = r.json();
    assert_eq!(chunks.as_array().unwrap().len(), 2);
    assert_eq!(chunks[1]["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn stream_errors_and_cuts() {
    let r = stream(&hello(), &[("x-fake-stream-error-after-events", "2")]).await;
    let events = events(&r);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2],
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
    );
    let app = super::app();
    let req = post_with(
        &format!(
            "{}?alt=sse",
            path("gemini-2.5-flash", "streamGenerateContent")
        ),
        &hello(),
        &[KEY, ("x-fake-abort-after-events", "2")],
    );
    let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
    let err = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("aborted"), "{err}");
}

#[tokio::test]
async fn simulated_errors_are_google_shaped() {
    let r = generate(&hello(), &[("x-fake-status", "429")]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let v = r.json();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        v["error"]["details"][0],
        json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"})
    );
    let r = generate(&hello(), &[("x-fake-status", "503")]).await;
    assert_google_error(
        &r,
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
    );
    let r = generate(&hello(), &[("x-fake-status", "500")]).await;
    assert_eq!(r.json()["error"]["status"], "INTERNAL");
}

#[tokio::test]
async fn bad_requests_are_invalid_argument() {
    let user = |parts: Value| json!({"contents": [{"role": "user", "parts": parts}]});
    let cases = [
        (json!({}), "* GenerateContentRequest.contents: contents is not specified\n"),
        (json!({"contents": [], "model": "x"}), "* GenerateContentRequest.contents: contents is not specified\n"),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}], "max_tokens": 5}), "Invalid JSON payload received. Unknown name \"max_tokens\": Cannot find field."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}], "generationConfig": {"max_tokens": 5}}), "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': Cannot find field."),
        (json!({"contents": [{"role": "assistant", "parts": [{"text": "a"}]}]}), "Please use a valid role: user, model."),
        (json!({"contents": [{"role": "user", "parts": []}]}), "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n"),
        (user(json!([{"type": "text", "text": "a"}])), "Invalid JSON payload received. Unknown name \"type\" at 'contents[0].parts[0]': Cannot find field."),
        (user(json!([{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}])), "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"not base64!\""),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}, {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "sunny"}}]}]}), "Invalid value at 'contents[2].parts[0].function_response.response' (type.googleapis.com/google.protobuf.Struct), \"sunny\""),
        (json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}), "Please ensure that function response turn comes immediately after a function call turn."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "model", "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "g"}}]}, {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}), "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "additionalProperties": false}}]}]}), "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters': Cannot find field."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {"x": {"type": "STRING", "$schema": "y"}}}}]}]}), "Invalid JSON payload received. Unknown name \"$schema\" at 'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field."),
        (json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}), "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"SOMETIMES\""),
    ];
    for (body, message) in cases {
        let r = generate(&body, &[]).await;
        assert_google_error(&r, 400, "INVALID_ARGUMENT", message);
    }
    // snake_case names are the proto's and accepted.
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}], "system_instruction": {"parts": [{"text": "b"}]}, "generation_config": {"max_output_tokens": 2}});
    let v = generate(&body, &[]).await.json();
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
}
