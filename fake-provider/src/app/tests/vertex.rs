//! Vertex AI (Gemini and Claude publishers) and the GCE metadata server, through the real
//! router: tokens the metadata server issues are accepted until they expire.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use super::{o200k_len, post_with, send_to, Reply};
use crate::app::{router, Clouds, Config};
use crate::gcp::Tokens;

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const GEMINI: &str = "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent";
const CLAUDE: &str = "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929";

fn app_with(ttl: Duration, project: Option<&str>) -> Router {
    router(Config {
        clouds: Clouds {
            gcp_tokens: Tokens::new(ttl),
            gcp_project: project.map(str::to_owned),
            ..Default::default()
        },
        ..Default::default()
    })
}

async fn token(app: &Router) -> String {
    let req = Request::get(TOKEN_PATH)
        .header("metadata-flavor", "Google")
        .body(Body::empty())
        .unwrap();
    let r = send_to(app.clone(), req).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

async fn post(
    app: &Router,
    path: &str,
    body: &Value,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    headers.extend_from_slice(extra);
    send_to(app.clone(), post_with(path, body, &headers)).await
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})
}

fn claude_hello() -> Value {
    json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hello, Claude"}]})
}

fn assert_unauthenticated(r: &Reply, reason: &str) {
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(v["error"]["details"][0]["reason"], reason);
    assert_eq!(
        v["error"]["details"][0]["metadata"]["service"],
        "aiplatform.googleapis.com"
    );
    assert!(r.header("www-authenticate").starts_with("Bearer realm="));
}

#[tokio::test]
async fn the_metadata_server_issues_tokens() {
    let app = app_with(Duration::from_secs(3600), None);
    let r = send_to(
        app.clone(),
        Request::get(TOKEN_PATH).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&r.body).contains("Missing Metadata-Flavor:Google header."));
    let forwarded = Request::get(TOKEN_PATH)
        .header("metadata-flavor", "Google")
        .header("x-forwarded-for", "10.0.0.1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send_to(app.clone(), forwarded).await.status,
        StatusCode::FORBIDDEN
    );
    let req = || {
        Request::get(TOKEN_PATH)
            .header("metadata-flavor", "Google")
            .body(Body::empty())
            .unwrap()
    };
    let r = send_to(app.clone(), req()).await;
    assert_eq!(r.header("metadata-flavor"), "Google");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-fake-token-serial"), "1");
    let v = r.json();
    assert!(v["access_token"].as_str().unwrap().starts_with("ya29.c."));
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["token_type"], "Bearer");
    let r = send_to(app.clone(), req()).await;
    assert_ne!(r.json()["access_token"], v["access_token"]);
    assert_eq!(r.header("x-fake-token-serial"), "2");
    let project = Request::get("/computeMetadata/v1/project/project-id")
        .header("metadata-flavor", "Google")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send_to(app.clone(), project).await.body, b"fake-project");
}

#[tokio::test]
async fn vertex_gemini_needs_a_live_token() {
    let app = app_with(Duration::from_millis(300), None);
    assert_unauthenticated(
        &post(&app, GEMINI, &hello(), None, &[]).await,
        "CREDENTIALS_MISSING",
    );
    assert_unauthenticated(
        &post(&app, GEMINI, &hello(), Some("ya29.c.made-up"), &[]).await,
        "ACCESS_TOKEN_TYPE_UNSUPPORTED",
    );
    let first = token(&app).await;
    let r = post(&app, GEMINI, &hello(), Some(&first), &[]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("x-fake-token-serial"), "1");
    assert!(r.header("x-fake-token-age-ms").parse::<u64>().unwrap() < 300);
    assert!(r.header("x-fake-token-ttl-left-ms").parse::<u64>().unwrap() <= 300);
    assert_eq!(r.header("x-fake-tokens-used"), "1");
    assert_eq!(r.header("x-fake-received-model"), "gemini-2.5-flash");
    let v = r.json();
    assert!(v["createTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["usageMetadata"]["trafficType"], "ON_DEMAND");
    assert_eq!(
        v["usageMetadata"]["candidatesTokensDetails"],
        json!([{"modality": "TEXT", "tokenCount": 16}])
    );
    // Expired: refused; a fresh token is accepted and counted.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_unauthenticated(
        &post(&app, GEMINI, &hello(), Some(&first), &[]).await,
        "ACCESS_TOKEN_EXPIRED",
    );
    let second = token(&app).await;
    let r = post(&app, GEMINI, &hello(), Some(&second), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-fake-token-serial"), "2");
    assert_eq!(
        (
            r.header("x-fake-tokens-issued"),
            r.header("x-fake-tokens-used")
        ),
        ("2", "2")
    );
    // The stream and Vertex's own fields (labels) work too.
    let mut body = hello();
    body["labels"] = json!({"team": "gateway"});
    let path = format!(
        "{}?alt=sse",
        GEMINI.replace(":generateContent", ":streamGenerateContent")
    );
    let r = post(
        &app,
        &path,
        &body,
        Some(&second),
        &[("x-fake-completion-tokens", "2")],
    )
    .await;
    assert_eq!(r.header("content-type"), "text/event-stream");
    assert_eq!(
        String::from_utf8_lossy(&r.body).matches("data: ").count(),
        2
    );
    // Vertex's Schema has additionalProperties.
    let mut body = hello();
    body["tools"] = json!([{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "additionalProperties": false}}]}]);
    assert_eq!(
        post(&app, GEMINI, &body, Some(&second), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_project_is_checked_when_configured() {
    let app = app_with(Duration::from_secs(60), Some("other-project"));
    let t = token(&app).await;
    let r = post(&app, GEMINI, &hello(), Some(&t), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn claude_on_vertex_answers_as_anthropic() {
    let app = app_with(Duration::from_secs(60), None);
    let t = token(&app).await;
    let r = post(
        &app,
        &format!("{CLAUDE}:rawPredict"),
        &claude_hello(),
        Some(&t),
        &[("x-fake-completion-tokens", "3")],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_vrtx_01"));
    assert_eq!(v["model"], "claude-sonnet-4-5@20250929");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "The quick brown"}])
    );
    assert_eq!(v["usage"]["input_tokens"], o200k_len("Hello, Claude"));
    assert_eq!(r.header("x-fake-token-serial"), "1");
    // Streamed.
    let mut body = claude_hello();
    body["stream"] = json!(true);
    let r = post(
        &app,
        &format!("{CLAUDE}:streamRawPredict"),
        &body,
        Some(&t),
        &[],
    )
    .await;
    assert_eq!(r.header("content-type"), "text/event-stream; charset=utf-8");
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    // The version is required; a Messages API version is not Vertex's.
    let mut body = claude_hello();
    body.as_object_mut().unwrap().remove("anthropic_version");
    let r = post(&app, &format!("{CLAUDE}:rawPredict"), &body, Some(&t), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(
        v["error"],
        json!({"type": "invalid_request_error", "message": "anthropic_version: Field required"})
    );
    assert!(v["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_vrtx_011C"));
    body["anthropic_version"] = json!("2023-06-01");
    let r = post(&app, &format!("{CLAUDE}:rawPredict"), &body, Some(&t), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Quota errors are Vertex's, model errors Anthropic's.
    let r = post(
        &app,
        &format!("{CLAUDE}:rawPredict"),
        &claude_hello(),
        Some(&t),
        &[("x-fake-status", "429")],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    let r = post(
        &app,
        &format!("{CLAUDE}:rawPredict"),
        &claude_hello(),
        Some(&t),
        &[("x-fake-status", "529")],
    )
    .await;
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    // No token: Google's 401.
    assert_unauthenticated(
        &post(
            &app,
            &format!("{CLAUDE}:rawPredict"),
            &claude_hello(),
            None,
            &[],
        )
        .await,
        "CREDENTIALS_MISSING",
    );
}
