//! A fake GCE / GKE metadata server: `GET /computeMetadata/v1/instance/service-accounts/
//! {default|EMAIL}/token` answers `{"access_token": "ya29.c....", "expires_in": TTL,
//! "token_type": "Bearer"}` (a new token every call, valid for `--gcp-token-ttl-secs`, which
//! Vertex AI on the same process then accepts); `.../email` the account's email and
//! `/computeMetadata/v1/project/project-id` the project (`--gcp-project`), as text.
//!
//! As Google's server: a request without `Metadata-Flavor: Google`, or with an
//! `X-Forwarded-For` header, is refused with 403; every answer carries `Metadata-Flavor:
//! Google`. `x-fake-token-serial` says which token was issued (1, 2, ...).

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{Answer, Exchange};
use crate::app::Config;

/// A metadata path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::app) enum Path {
    Token,
    Email,
    ProjectId,
}

/// The path after `/computeMetadata/v1/`.
pub(super) fn route(rest: &str) -> Option<Path> {
    let rest = rest.trim_end_matches('/');
    if rest == "project/project-id" {
        return Some(Path::ProjectId);
    }
    let account = rest.strip_prefix("instance/service-accounts/")?;
    match account.split_once('/')? {
        (_, "token") => Some(Path::Token),
        (_, "email") => Some(Path::Email),
        _ => None,
    }
}

/// The project the metadata server reports.
fn project(config: &Config) -> &str {
    config
        .clouds
        .gcp_project
        .as_deref()
        .unwrap_or("fake-project")
}

/// The email of the fake's service account.
fn email(config: &Config) -> String {
    format!("fake-provider@{}.iam.gserviceaccount.com", project(config))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("metadata-flavor", HeaderValue::from_static("Google"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("Metadata Server for VM"),
    );
    resp
}

pub(super) fn respond(config: &Config, x: &Exchange<'_>, path: &Path) -> Answer {
    let mut echo = Vec::new();
    let flavored = x
        .header("metadata-flavor")
        .is_some_and(|v| v.eq_ignore_ascii_case("google"));
    let response = if !flavored || x.headers.contains_key("x-forwarded-for") {
        let why = if flavored {
            "Request with X-Forwarded-For header is not allowed."
        } else {
            "Missing Metadata-Flavor:Google header."
        };
        text(
            StatusCode::FORBIDDEN,
            "text/html; charset=UTF-8",
            format!(
                "Your client does not have permission to get URL /computeMetadata/v1/{} from \
                 this server. {why}",
                x.uri.path().trim_start_matches("/computeMetadata/v1/")
            ),
        )
    } else {
        match path {
            Path::Token => {
                let tokens = &config.clouds.gcp_tokens;
                let (token, issued) = tokens.issue(Instant::now());
                echo.push(("x-fake-token-serial", HeaderValue::from(issued.serial)));
                let body = json!({
                    "access_token": token,
                    "expires_in": tokens.ttl.as_secs(),
                    "token_type": "Bearer",
                });
                text(StatusCode::OK, "application/json", body.to_string())
            }
            Path::Email => text(StatusCode::OK, "application/text", email(config)),
            Path::ProjectId => text(
                StatusCode::OK,
                "application/text",
                project(config).to_owned(),
            ),
        }
    };
    Answer {
        response,
        prompt_tokens: 0,
        model: String::new(),
        echo,
        request_id: super::super::random_id("req_"),
        anthropic: false,
    }
}
