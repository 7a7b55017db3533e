//! OpenAI-format error responses made by the filter itself.
//!
//! Every local reply is `{"error":{"message","type","param","code"}}` with the status OpenAI uses
//! for the same fault, so OpenAI SDKs raise their usual exception classes (`BadRequestError`,
//! `AuthenticationError`, `NotFoundError`...).

use serde::Serialize;

/// An error the filter answers itself, before anything reaches a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u32,
    pub kind: &'static str,
    pub code: &'static str,
    pub param: Option<&'static str>,
    pub message: String,
    /// Label for metrics and the access log (`outcome`).
    pub outcome: &'static str,
    /// When a `429` may be retried (its `Retry-After`), when the error itself knows.
    pub retry_after_ms: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl HttpError {
    fn new(status: u32, kind: &'static str, code: &'static str, outcome: &'static str) -> Self {
        HttpError {
            status,
            kind,
            code,
            param: None,
            message: String::new(),
            outcome,
            retry_after_ms: None,
        }
    }

    fn msg(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn invalid_json(detail: &str) -> Self {
        Self::new(400, "invalid_request_error", "invalid_json", "bad_request").msg(format!(
            "We could not parse the JSON body of your request ({detail}). The body must be a JSON object."
        ))
    }

    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", "invalid_value", "bad_request")
            .param(param)
            .msg(message)
    }

    pub fn missing_param(param: &'static str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            "missing_required_parameter",
            "bad_request",
        )
        .param(param)
        .msg(format!("Missing required parameter: '{param}'."))
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(404, "invalid_request_error", "model_not_found", "no_route")
            .param("model")
            .msg(format!(
                "The model `{model}` does not exist or you do not have access to it."
            ))
    }

    /// 404 as for a model that does not exist: the caller's access list does not include it
    /// (OpenAI answers a model an account cannot use the same way).
    pub fn model_denied(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "model_not_found",
            "model_denied",
        )
        .param("model")
        .msg(format!(
            "The model `{model}` does not exist or you do not have access to it."
        ))
    }

    /// 403: a budget applies and the model has no price (`limits.budgets.unpriced: refuse`).
    pub fn model_not_priced(model: &str) -> Self {
        Self::new(
            403,
            "permission_error",
            "model_not_priced",
            "model_not_priced",
        )
        .param("model")
        .msg(format!(
            "The model `{model}` has no price in this gateway's price table, and a dollar \
                 budget applies to you: it cannot be admitted. Ask the operator to price it."
        ))
    }

    pub fn missing_key() -> Self {
        Self::new(401, "invalid_request_error", "missing_api_key", "unauthorized").msg(
            "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).",
        )
    }

    pub fn invalid_key() -> Self {
        Self::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "unauthorized",
        )
        .msg("Incorrect API key provided.")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            "payload_too_large",
        )
        .msg(format!(
            "The request body is larger than this gateway accepts ({limit} bytes)."
        ))
    }

    /// 429: a rate limit or token budget refused the request. `kind` is `requests` or
    /// `tokens`, as OpenAI types its rate limit errors.
    pub fn rate_limited(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(429, kind, "rate_limit_exceeded", "rate_limited").msg(message)
    }

    /// 429 `insufficient_quota`: a dollar budget refused the request, as OpenAI answers an
    /// account out of credit (the SDKs raise `RateLimitError`; `x-should-retry: false` tells
    /// them not to retry a budget that resets later than a retry would wait).
    pub fn over_budget(message: impl Into<String>) -> Self {
        Self::new(
            429,
            "insufficient_quota",
            "insufficient_quota",
            "over_budget",
        )
        .msg(message)
    }

    /// 429: every provider the request could go to is cooling down after its own `429`
    /// (nothing was sent); it may be retried after `retry_after_ms`.
    pub fn providers_cooling(retry_after_ms: u64) -> Self {
        let s = retry_after_ms.div_ceil(1000).max(1);
        let mut e =
            Self::new(429, "requests", "rate_limit_exceeded", "providers_cooling").msg(format!(
            "Every provider of this model is rate limited by its API; please retry after {s} s."
        ));
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    /// 503: the global rate limit service did not answer and the failure mode is closed.
    pub fn limiter_unavailable() -> Self {
        Self::new(
            503,
            "server_error",
            "rate_limit_service_unavailable",
            "ratelimit_unavailable",
        )
        .msg("The rate limit service is unavailable; the request was not sent. Please retry.")
    }

    /// 503: the provider's access token could not be had in time (the metadata server did
    /// not give one); nothing was sent.
    pub fn credential_unavailable() -> Self {
        Self::new(
            503,
            "server_error",
            "provider_credential_unavailable",
            "credential_unavailable",
        )
        .msg("The gateway could not obtain the provider's access token in time; the request was not sent. Please retry.")
    }

    /// 502: the provider failed in a way the client's API has no closer word for.
    pub fn provider_error(message: impl Into<String>) -> Self {
        Self::new(502, "server_error", "provider_error", "upstream_error").msg(message)
    }

    /// 503: every provider of a failover chain failed.
    pub fn providers_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            503,
            "server_error",
            "providers_unavailable",
            "providers_unavailable",
        )
        .msg(message)
    }

    /// An error Envoy made itself (`details` is its `response.code_details`, which is not
    /// `via_upstream`) for a request the filter routed: the provider was not reached, reset
    /// the connection or did not answer in time. Outcome `upstream_error`: nothing is billed.
    pub fn from_envoy(status: u32, details: &str) -> Self {
        let unavailable = |why: &str| {
            Self::new(
                503,
                "server_error",
                "provider_unavailable",
                "upstream_error",
            )
            .msg(format!(
                "The provider could not be reached ({why}). Please retry later."
            ))
        };
        if details.contains("timeout") {
            return Self::new(504, "server_error", "provider_timeout", "upstream_error")
                .msg("The provider did not answer in time. Please retry later.");
        }
        if details.contains("connection_failure") {
            return unavailable("connection failed");
        }
        if details.contains("{overflow}") || details == "no_healthy_upstream" {
            return unavailable("no capacity");
        }
        if details.contains("cluster_not_found") || details.contains("maintenance_mode") {
            return unavailable("not available");
        }
        if details.starts_with("upstream_reset") {
            return Self::provider_error(
                "The provider closed the connection before answering. Please retry later.",
            );
        }
        match status {
            413 => Self::new(
                413,
                "invalid_request_error",
                "request_too_large",
                "payload_too_large",
            )
            .msg("The request is larger than this gateway accepts."),
            400..=499 => Self::new(
                status,
                "invalid_request_error",
                "invalid_request",
                "bad_request",
            )
            .msg(format!(
                "The gateway could not pass the request on (HTTP {status})."
            )),
            _ => Self::provider_error(format!(
                "The gateway could not get an answer from the provider (HTTP {status})."
            )),
        }
    }

    /// The JSON body of the reply.
    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        // Serialising a struct of strings cannot fail; fall back to a fixed body regardless.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = HttpError::model_not_found("gpt-\"9\"");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status, 404);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-\"9\""));
    }

    #[test]
    fn envoy_failures_map_to_the_status_that_fits() {
        for (status, details, want, code) in [
            (
                503,
                "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
                503,
                "provider_unavailable",
            ),
            (503, "upstream_reset_before_response_started{connection_failure}", 503, "provider_unavailable"),
            (504, "upstream_response_timeout", 504, "provider_timeout"),
            (504, "upstream_per_try_timeout", 504, "provider_timeout"),
            (503, "upstream_reset_before_response_started{connection_termination}", 502, "provider_error"),
            (503, "upstream_reset_before_response_started{remote_reset}", 502, "provider_error"),
            (503, "upstream_reset_before_response_started{overflow}", 503, "provider_unavailable"),
            (503, "no_healthy_upstream", 503, "provider_unavailable"),
            (503, "cluster_not_found", 503, "provider_unavailable"),
            (500, "something_new", 502, "provider_error"),
            (413, "request_payload_too_large", 413, "request_too_large"),
            (431, "header_overflow", 431, "invalid_request"),
        ] {
            let e = HttpError::from_envoy(status, details);
            assert_eq!((e.status, e.code), (want, code), "{details}");
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            if want >= 500 {
                assert_eq!((e.kind, e.outcome), ("server_error", "upstream_error"));
            }
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(HttpError::invalid_json("x").status, 400);
        assert_eq!(HttpError::missing_param("model").status, 400);
        assert_eq!(HttpError::missing_key().status, 401);
        assert_eq!(HttpError::invalid_key().status, 401);
        assert_eq!(HttpError::too_large(1).status, 413);
        assert_eq!(HttpError::rate_limited("tokens", "x").status, 429);
        assert_eq!(HttpError::limiter_unavailable().status, 503);
    }
}
