//! AWS Bedrock's Converse and ConverseStream, through the real router, signed as an SDK signs.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{app, o200k_len, send, send_to, Reply};
use crate::app::{router, Clouds, Config};
use crate::eventstream::decode::{frames, Frame};

const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1%3A0";

fn path(op: &str) -> String {
    format!("/model/{MODEL}/{op}")
}

/// A request signed with `secret` for the fake's default key id and region, at `time`.
fn signed_with(
    path: &str,
    body: &[u8],
    extra: &[(&str, &str)],
    secret: &str,
    time: SystemTime,
) -> Request<Body> {
    let defaults = Clouds::default().aws;
    let identity: Identity =
        Credentials::new(defaults.access_key_id, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&defaults.region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let mut headers: Vec<(&str, &str)> = vec![("host", HOST), ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let url = format!("https://{HOST}{path}");
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut b = Request::post(path);
    for (k, v) in headers.iter().copied().chain(instructions.headers()) {
        b = b.header(k, v);
    }
    b.body(Body::from(body.to_vec())).unwrap()
}

fn signed(path: &str, body: &Value, extra: &[(&str, &str)]) -> Request<Body> {
    let secret = Clouds::default().aws.secret_access_key;
    signed_with(
        path,
        body.to_string().as_bytes(),
        extra,
        &secret,
        SystemTime::now(),
    )
}

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "Hello"}]}]})
}

fn weather_tools() -> Value {
    json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather of a city",
        "inputSchema": {"json": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}}},
        {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}]})
}

fn assert_bedrock_error(r: &Reply, status: u16, code: &str, message: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), "application/json");
    let kind = r.header("x-amzn-errortype");
    assert!(
        kind.starts_with(&format!("{code}:http://internal.amazon.com/coral/")),
        "{kind}"
    );
    let request_id = r.header("x-amzn-requestid");
    assert_eq!(request_id.len(), 36, "{request_id}");
    assert_eq!(r.header("x-request-id"), request_id);
    assert_eq!(r.json(), json!({"message": message}));
}

#[tokio::test]
async fn converse_answers_text_with_usage() {
    let r = send(signed(&path("converse"), &hello(), &[])).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-fake-aws-auth"), "sigv4");
    assert_eq!(
        r.header("x-fake-received-signed-headers"),
        "content-type;host;x-amz-date"
    );
    assert_eq!(
        r.header("x-fake-received-model"),
        "anthropic.claude-3-5-sonnet-20240620-v1:0"
    );
    assert_eq!(r.header("x-amzn-requestid").len(), 36);
    let v = r.json();
    let text = v["output"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(o200k_len(text), 16);
    let input = o200k_len("Hello");
    assert_eq!(r.header("x-fake-prompt-tokens"), input.to_string());
    assert_eq!(
        v,
        json!({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": input, "outputTokens": 16, "totalTokens": input + 16},
            "metrics": {"latencyMs": 1}})
    );
}

#[tokio::test]
async fn inference_config_limits_and_stops() {
    let mut body = hello();
    body["system"] = json!([{"text": "Be brief."}, {"cachePoint": {"type": "default"}}]);
    body["inferenceConfig"] = json!({"maxTokens": 5, "temperature": 0.5, "topP": 0.9});
    let r = send(signed(&path("converse"), &body, &[])).await;
    let v = r.json();
    assert_eq!(v["stopReason"], "max_tokens");
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        "The quick brown fox jumps"
    );
    assert_eq!(v["usage"]["outputTokens"], 5);
    assert_eq!(
        v["usage"]["inputTokens"],
        o200k_len("Hello") + o200k_len("Be brief.")
    );
    body["inferenceConfig"] = json!({"stopSequences": [" fox"]});
    let v = send(signed(&path("converse"), &body, &[])).await.json();
    assert_eq!(v["stopReason"], "stop_sequence");
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        "The quick brown"
    );
    // Cache tokens come out of the input tokens; the total has them all.
    let r = send(signed(
        &path("converse"),
        &hello(),
        &[
            ("x-fake-cache-read-tokens", "1"),
            ("x-fake-completion-tokens", "2"),
        ],
    ))
    .await;
    let u = &r.json()["usage"];
    assert_eq!(
        *u,
        json!({"inputTokens": o200k_len("Hello") - 1, "outputTokens": 2,
        "totalTokens": o200k_len("Hello") + 2, "cacheReadInputTokens": 1})
    );
}

#[tokio::test]
async fn tool_use_round_trip() {
    let mut body = hello();
    body["toolConfig"] = weather_tools();
    let r = send(signed(
        &path("converse"),
        &body,
        &[("x-fake-tool-call", "get_weather"), ("x-fake-id", "fixed")],
    ))
    .await;
    let v = r.json();
    assert_eq!(v["stopReason"], "tool_use");
    let block = &v["output"]["message"]["content"][0]["toolUse"];
    let id = block["toolUseId"].as_str().unwrap();
    assert!(id.starts_with("tooluse_") && id.len() == 30, "{id}");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "fake", "unit": "celsius"}));
    assert_eq!(
        v["usage"]["outputTokens"],
        o200k_len("get_weather") + o200k_len(r#"{"city":"fake","unit":"celsius"}"#)
    );
    // `any` calls the first tool without a control header; `tool` names one.
    body["toolConfig"]["toolChoice"] = json!({"any": {}});
    let v = send(signed(&path("converse"), &body, &[])).await.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["toolUse"]["name"],
        "get_weather"
    );
    body["toolConfig"]["toolChoice"] = json!({"tool": {"name": "get_time"}});
    let v = send(signed(&path("converse"), &body, &[])).await.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["toolUse"]["name"],
        "get_time"
    );
    // The result handed back gets text.
    let body = json!({"toolConfig": weather_tools(), "messages": [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"text": "Let me look."}, {"toolUse": {"toolUseId": id, "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"json": {"sky": "clear"}}, {"text": "sunny"}], "status": "success"}}]}]});
    let r = send(signed(
        &path("converse"),
        &body,
        &[("x-fake-tool-call", "get_weather")],
    ))
    .await;
    let v = r.json();
    assert_eq!(v["stopReason"], "end_turn", "{v}");
    let expected: u64 = [
        "Weather in Paris?",
        "Let me look.",
        "get_weather",
        r#"{"city":"Paris"}"#,
        r#"{"sky":"clear"}"#,
        "sunny",
    ]
    .iter()
    .map(|s| o200k_len(s))
    .sum();
    assert_eq!(v["usage"]["inputTokens"], expected);
}

/// The frames of a stream reply, checking the content type.
fn stream_frames(r: &Reply) -> Vec<Frame> {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("content-type"),
        "application/vnd.amazon.eventstream"
    );
    frames(&r.body)
}

fn event_types(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.header(":event-type").to_owned())
        .collect()
}

#[tokio::test]
async fn converse_stream_sends_event_stream_frames() {
    let r = send(signed(
        &path("converse-stream"),
        &hello(),
        &[("x-fake-completion-tokens", "3")],
    ))
    .await;
    assert_eq!(r.header("x-amzn-requestid").len(), 36);
    let frames = stream_frames(&r);
    assert_eq!(
        event_types(&frames),
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    for f in &frames {
        assert_eq!(f.header(":message-type"), "event");
        assert_eq!(f.header(":content-type"), "application/json");
        assert!(
            f.payload["p"].as_str().is_some_and(|p| !p.is_empty()),
            "padding: {:?}",
            f.payload
        );
    }
    assert_eq!(frames[0].payload["role"], "assistant");
    let text: String = frames[1..4]
        .iter()
        .map(|f| {
            assert_eq!(f.payload["contentBlockIndex"], 0);
            f.payload["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "The quick brown");
    assert_eq!(frames[4].payload["contentBlockIndex"], 0);
    assert_eq!(frames[5].payload["stopReason"], "end_turn");
    let input = o200k_len("Hello");
    assert_eq!(
        frames[6].payload["usage"],
        json!({"inputTokens": input, "outputTokens": 3, "totalTokens": input + 3})
    );
    assert!(frames[6].payload["metrics"]["latencyMs"].as_u64().is_some());
}

#[tokio::test]
async fn converse_stream_tool_use() {
    let mut body = hello();
    body["toolConfig"] = weather_tools();
    let r = send(signed(
        &path("converse-stream"),
        &body,
        &[("x-fake-tool-call", "get_weather")],
    ))
    .await;
    let frames = stream_frames(&r);
    let types = event_types(&frames);
    assert_eq!(types[..2], ["messageStart", "contentBlockStart"]);
    let start = &frames[1].payload["start"]["toolUse"];
    assert!(start["toolUseId"].as_str().unwrap().starts_with("tooluse_"));
    assert_eq!(start["name"], "get_weather");
    let input: String = frames
        .iter()
        .filter(|f| f.header(":event-type") == "contentBlockDelta")
        .map(|f| {
            f.payload["delta"]["toolUse"]["input"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        frames
            .iter()
            .filter(|f| f.header(":event-type") == "contentBlockDelta")
            .count()
            > 1
    );
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"city": "fake", "unit": "celsius"})
    );
    assert_eq!(
        types[types.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    assert_eq!(frames[frames.len() - 2].payload["stopReason"], "tool_use");
}

#[tokio::test]
async fn converse_stream_exceptions_and_cuts() {
    let r = send(signed(
        &path("converse-stream"),
        &hello(),
        &[("x-fake-stream-error-after-events", "2")],
    ))
    .await;
    let frames = stream_frames(&r);
    assert_eq!(frames.len(), 3);
    let last = &frames[2];
    assert_eq!(last.header(":message-type"), "exception");
    assert_eq!(
        last.header(":exception-type"),
        "serviceUnavailableException"
    );
    assert_eq!(
        last.payload,
        json!({"message": "Bedrock is unable to process your request."})
    );
    let r = send(signed(
        &path("converse-stream"),
        &hello(),
        &[
            ("x-fake-stream-error-after-events", "1"),
            ("x-fake-error-type", "ThrottlingException"),
        ],
    ))
    .await;
    let frames = stream_frames(&r);
    assert_eq!(frames[1].header(":exception-type"), "throttlingException");
    // A cut stream: the body fails after two whole frames.
    let resp = app()
        .oneshot(signed(
            &path("converse-stream"),
            &hello(),
            &[("x-fake-abort-after-events", "2")],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(f)) => got.extend_from_slice(f.data_ref().unwrap()),
            Some(Err(e)) => break e,
            None => panic!("the stream must fail"),
        }
    };
    assert!(err.to_string().contains("aborted"), "{err}");
    assert_eq!(frames_of(&got), 2);
}

fn frames_of(body: &[u8]) -> usize {
    frames(body).len()
}

#[tokio::test]
async fn signatures_are_checked() {
    // Unsigned.
    let req = Request::post(path("converse"))
        .header("host", HOST)
        .body(Body::from(hello().to_string()))
        .unwrap();
    let r = send(req).await;
    assert_bedrock_error(
        &r,
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    // Signed with another secret.
    let body = hello().to_string();
    let r = send(signed_with(
        &path("converse"),
        body.as_bytes(),
        &[],
        "wrong",
        SystemTime::now(),
    ))
    .await;
    let mismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
    assert_bedrock_error(&r, 403, "InvalidSignatureException", mismatch);
    assert!(r
        .header("x-amzn-errortype")
        .ends_with("com.amazon.coral.service/"));
    // The body changed after signing.
    let req = signed(&path("converse"), &hello(), &[]);
    let (parts, _) = req.into_parts();
    let tampered = body.replace("Hello", "Hellp");
    let r = send(Request::from_parts(parts, Body::from(tampered))).await;
    assert_bedrock_error(&r, 403, "InvalidSignatureException", mismatch);
    // Signed an hour ago.
    let old = SystemTime::now() - std::time::Duration::from_secs(3600);
    let r = send(signed_with(
        &path("converse"),
        body.as_bytes(),
        &[],
        &Clouds::default().aws.secret_access_key,
        old,
    ))
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired: "));
}

#[tokio::test]
async fn forced_headers_do_not_break_the_signature() {
    let mut forced = HeaderMap::new();
    forced.insert("x-fake-completion-tokens", HeaderValue::from_static("2"));
    let app = router(Config {
        forced_headers: forced,
        ..Default::default()
    });
    let r = send_to(
        app,
        signed(
            &path("converse"),
            &hello(),
            &[("x-fake-completion-tokens", "9")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["usage"]["outputTokens"], 2);
}

#[tokio::test]
async fn bedrock_api_keys() {
    let app = || {
        router(Config {
            clouds: Clouds {
                bedrock_api_key: Some("ABSK-test-key".into()),
                ..Default::default()
            },
            ..Default::default()
        })
    };
    let bearer = |key: &str| {
        Request::post(path("converse"))
            .header("authorization", format!("Bearer {key}"))
            .body(Body::from(hello().to_string()))
            .unwrap()
    };
    let r = send_to(app(), bearer("ABSK-test-key")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-fake-aws-auth"), "api-key");
    let r = send_to(app(), bearer("ABSK-other")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json(),
        json!({"Message": "Authentication failed: Please make sure your API Key is valid."})
    );
    // Without a configured key no bearer is accepted.
    let r = send(bearer("ABSK-test-key")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn simulated_errors_are_bedrock_exceptions() {
    for (status, code) in [
        ("429", "ThrottlingException"),
        ("503", "ServiceUnavailableException"),
        ("500", "InternalServerException"),
        ("408", "ModelTimeoutException"),
        ("400", "ValidationException"),
    ] {
        let r = send(signed(
            &path("converse"),
            &hello(),
            &[("x-fake-status", status)],
        ))
        .await;
        assert_eq!(r.status.as_str(), status);
        assert!(
            r.header("x-amzn-errortype")
                .starts_with(&format!("{code}:")),
            "{status}"
        );
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = send(signed(
        &path("converse"),
        &hello(),
        &[("x-fake-status", "429")],
    ))
    .await;
    assert_bedrock_error(
        &r,
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    );
    let r = send(signed(
        &path("converse-stream"),
        &hello(),
        &[("x-fake-error-type", "ModelNotReadyException")],
    ))
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r
        .header("x-amzn-errortype")
        .starts_with("ModelNotReadyException:"));
}

#[tokio::test]
async fn bad_bodies_are_validation_exceptions() {
    let tools = weather_tools();
    let cases = [
        (json!({}), "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null"),
        (json!({"messages": []}), "A conversation must start with a user message. Try again with a conversation that starts with a user message."),
        (json!({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}), "A conversation must start with a user message. Try again with a conversation that starts with a user message."),
        (json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]}), "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."),
        (json!({"messages": [{"role": "system", "content": [{"text": "a"}]}]}), "1 validation error detected: Value 'system' at 'messages.0.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]"),
        (json!({"messages": [{"role": "user", "content": []}]}), "The content field in the Message object at messages.0 is empty. Add a ContentBlock object to the content field and try again."),
        (json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"maxTokens": 0}}), "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"),
        (json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]}, {"role": "user", "content": [{"text": "b"}]}]}), "The toolConfig field must be defined when using toolUse and toolResult content blocks."),
        (json!({"toolConfig": tools, "messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]}, {"role": "user", "content": [{"text": "b"}]}]}), "Expected toolResult blocks at messages.2.content for the following Ids: t1"),
        (json!({"toolConfig": tools, "messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "t9", "content": [{"text": "x"}]}}]}]}), "The number of toolResult blocks at messages.0.content exceeds the number of toolUse blocks of previous turn."),
        (json!({"toolConfig": {"tools": [{"toolSpec": {"name": "bad name", "inputSchema": {"json": {}}}}]}, "messages": [{"role": "user", "content": [{"text": "a"}]}]}), "1 validation error detected: Value 'bad name' at 'toolConfig.tools.0.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"),
    ];
    for (body, message) in cases {
        let r = send(signed(&path("converse"), &body, &[])).await;
        assert_bedrock_error(&r, 400, "ValidationException", message);
    }
    // OpenAI-shaped content and a bad image are malformed.
    for body in [
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}]}]}),
        json!({"messages": [{"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AAAA"}}}]}]}),
    ] {
        let r = send(signed(&path("converse"), &body, &[])).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r
            .header("x-amzn-errortype")
            .starts_with("ValidationException:"));
    }
    let ok = json!({"messages": [{"role": "user", "content": [{"text": "a"}, {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]}]});
    assert_eq!(
        send(signed(&path("converse"), &ok, &[])).await.status,
        StatusCode::OK
    );
    // Invalid JSON, and a model id that is not one.
    let secret = Clouds::default().aws.secret_access_key;
    let r = send(signed_with(
        &path("converse"),
        b"{not json",
        &[],
        &secret,
        SystemTime::now(),
    ))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Malformed input request: "));
    let r = send(signed(
        "/model/arn%3Aaws%3As3%3A%3A%3Abucket/converse",
        &hello(),
        &[],
    ))
    .await;
    assert_bedrock_error(
        &r,
        400,
        "ValidationException",
        "The provided model identifier is invalid.",
    );
    let arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
    let r = send(signed(arn, &hello(), &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-fake-received-model"), "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0");
}
