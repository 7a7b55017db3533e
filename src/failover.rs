//! Failover chains: what the gateway filter hands to its upstream twin, and what each attempt
//! leaves behind.
//!
//! Envoy does the retrying. A route with a fallback sends the request to an Envoy *composite*
//! cluster whose n-th sub-cluster is the n-th provider of the chain, and the Envoy route's retry
//! policy (5xx, reset, connect-failure, 429, per-try timeout, retry budget) makes attempt n go
//! to sub-cluster n. The same filter, configured as an **upstream** HTTP filter on the composite
//! cluster, adapts each attempt to the provider it reaches: path, credential, model name and
//! body format. The router replays the original body to every attempt, so each adaptation
//! starts from the same OpenAI-format request.
//!
//! The two filters talk through the request's filter state, which both see:
//! - the gateway filter writes a [`Plan`] (`wasm.llm.plan`): per attempt, the provider, its
//!   format, path, model, auth style and the *name* of the variable holding its key (never the
//!   key itself: filter state can be printed in an access log);
//! - each attempt appends its outcome to a journal (`wasm.llm.journal`), which the gateway
//!   filter reads when the request ends, for the access log, the metrics and, when every
//!   provider failed, one clear error.

pub mod first_event;

use serde::{Deserialize, Serialize};

use crate::config::providers::{AuthStyle, Format, Wire};
use crate::error::HttpError;
use crate::route::Hop;
use crate::translate::{openai_to_anthropic, Target};

/// One attempt of a chain: where it goes and how the request must look there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub format: Format,
    /// The request path this provider takes.
    pub path: String,
    /// The model name this provider receives.
    pub model: String,
    pub auth: AuthStyle,
    /// The environment variable holding the key this attempt uses.
    pub key_env: Option<String>,
    /// That key's index among the provider's keys (metrics and cool-down name it so).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub key: usize,
    /// The provider's cool-down after a `429`: `(default_ms, max_ms)`; `None` when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<(u64, u64)>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The chain for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `max_tokens` for providers that require it (Anthropic) when the client set none.
    pub default_max_tokens: u64,
    pub attempts: Vec<Attempt>,
    /// Whether attempts but the last hold a 200 until its first event
    /// ([`first_event`]); `fallback.first_event_check`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub first_event_check: bool,
    /// With `tracing`: the request's trace context (a `traceparent` naming the request's
    /// span), from which each attempt sends its provider the `traceparent` of its own span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Plan {
    /// The plan for a chain of hops; `client_path` is the path of an OpenAI-format request
    /// and `suffix` its endpoint (`chat/completions`...).
    pub fn new(
        chain: &[Hop],
        client_path: &str,
        suffix: &str,
        stream: bool,
        default_max_tokens: u64,
    ) -> Plan {
        Plan {
            default_max_tokens,
            first_event_check: true,
            trace: None,
            attempts: chain
                .iter()
                .map(|hop| {
                    let p = hop.provider;
                    let c = p.cooldown;
                    Attempt {
                        provider: p.name.clone(),
                        format: p.format,
                        path: p
                            .path(suffix, &hop.model, stream)
                            .unwrap_or_else(|| client_path.to_string()),
                        model: hop.model.clone(),
                        auth: p.auth,
                        key_env: p.key_env(hop.key).map(str::to_string),
                        key: hop.key,
                        cooldown: (!c.max.is_zero()).then(|| (millis(c.default), millis(c.max))),
                    }
                })
                .collect(),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(s: &[u8]) -> Option<Plan> {
        serde_json::from_slice(s).ok()
    }

    /// The attempt Envoy numbers `n` (1 for the first).
    pub fn attempt(&self, n: u64) -> Option<&Attempt> {
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        self.attempts.get(i)
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Attempt {
    /// The header carrying `key` for this provider.
    pub fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        self.auth.header(key)
    }

    /// The wire this attempt speaks.
    pub fn wire(&self) -> Wire {
        Wire::of(self.format, &self.model)
    }

    /// The OpenAI-format request `body` as this provider takes it.
    pub fn body(&self, body: &[u8], default_max_tokens: u64) -> Result<Vec<u8>, HttpError> {
        let target = Target {
            model: &self.model,
            default_max_tokens,
        };
        let wire = self.wire();
        let Some(direction) = wire.direction() else {
            return crate::wire::with_model(body, &self.model);
        };
        let translated = direction.translate_request(body, &target)?.body;
        match wire {
            Wire::Anthropic { vertex: true } => openai_to_anthropic::for_vertex(&translated),
            _ => Ok(translated),
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered with this status.
    Status(u32),
    /// No connection could be made.
    ConnectFailure,
    /// No answer within the per-try timeout.
    Timeout,
    /// The connection or stream was reset before an answer.
    Reset,
    /// A `200` whose first event (or whole JSON body) was an error.
    InBandError,
    /// A `200` with no first event within the per-try timeout.
    NoFirstEvent,
}

impl Outcome {
    /// Label for metrics and the journal: `503`, `connect_failure`, `timeout`, `reset`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::ConnectFailure => "connect_failure".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Reset => "reset".into(),
            Outcome::InBandError => "in_band_error".into(),
            Outcome::NoFirstEvent => "first_event_timeout".into(),
        }
    }

    /// Whether Envoy's retry policy moves on after it (the answer was not a success).
    pub fn failed(&self) -> bool {
        match self {
            Outcome::Status(s) => *s == 429 || *s >= 500,
            _ => true,
        }
    }

    /// An attempt that got no answer: a transport failure reason means the connection was
    /// never made; else a wait of about the per-try timeout (`expected_ms`) means it ran out.
    pub fn without_answer(
        transport_failure: bool,
        waited_ms: u64,
        expected_ms: Option<u64>,
    ) -> Self {
        if transport_failure {
            Outcome::ConnectFailure
        } else if expected_ms.is_some_and(|t| waited_ms.saturating_mul(10) >= t.saturating_mul(9)) {
            Outcome::Timeout
        } else {
            Outcome::Reset
        }
    }

    fn describe(label: &str) -> String {
        match label {
            "connect_failure" => "connection failed".into(),
            "timeout" => "timed out".into(),
            "reset" => "connection reset".into(),
            "in_band_error" => "an error inside its 200 answer".into(),
            "first_event_timeout" => "no first event in time".into(),
            s => format!("HTTP {s}"),
        }
    }
}

/// The attempts made so far: `(provider, outcome label)`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal(pub Vec<(String, String)>);

impl Journal {
    pub fn decode(s: &[u8]) -> Journal {
        serde_json::from_slice(s).unwrap_or_default()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Record attempt `n` (1-based); a later record of the same attempt replaces it.
    pub fn record(&mut self, n: u64, provider: &str, outcome: &Outcome) {
        let i = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
        let entry = (provider.to_string(), outcome.label());
        match self.0.get_mut(i) {
            Some(e) => *e = entry,
            None => self.0.push(entry),
        }
    }

    /// The provider of the last attempt (the one whose answer the client got).
    pub fn served(&self) -> Option<&str> {
        self.0.last().map(|(p, _)| p.as_str())
    }

    /// The attempts that failed over to a later one.
    pub fn failovers(&self) -> &[(String, String)] {
        self.0.split_last().map_or(&[], |(_, before)| before)
    }

    /// `openai:503,azure:connect_failure` for the access log.
    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(p, o)| format!("{p}:{o}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The one error the client gets when no provider of the chain could answer.
    pub fn all_failed(&self, chain_len: usize) -> HttpError {
        let tried: Vec<String> = self
            .0
            .iter()
            .map(|(p, o)| format!("{p}: {}", Outcome::describe(o)))
            .collect();
        let message = if tried.is_empty() {
            "No provider could serve the request.".to_string()
        } else if tried.len() >= chain_len {
            format!(
                "All {} providers failed ({}). Please retry later.",
                tried.len(),
                tried.join("; ")
            )
        } else {
            format!(
                "The request failed on {} of {chain_len} providers ({}) and was not retried further. Please retry later.",
                tried.len(),
                tried.join("; ")
            )
        };
        HttpError::providers_unavailable(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::{json, Value};

    fn cfg() -> Config {
        let v = json!({
            "providers": {
                "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
                "azure": {"cluster": "azure", "format": "azure", "api_key_env": "AZURE_KEY",
                          "models": {"gpt-4o": "my-gpt4o"}},
                "claude": {"cluster": "claude", "format": "anthropic", "api_key_env": "CLAUDE_KEY"}
            },
            "routes": [{"match": {"model": "gpt-4o"}, "to": {"provider": "openai"},
                        "fallback": {"cluster": "gpt4o-failover",
                                     "to": [{"provider": "azure"},
                                            {"provider": "claude", "model": "claude-sonnet-4-5"}]}}]
        });
        Config::parse(v.to_string().as_bytes(), &|_| Some("k".into())).unwrap()
    }

    fn route_gpt4o(c: &Config) -> crate::route::Decision<'_> {
        crate::route::route(
            c,
            "gpt-4o",
            "/v1/chat/completions",
            &|_| None,
            &crate::cooldown::Cooling::default(),
            &mut |_| 0,
        )
        .unwrap()
    }

    #[test]
    fn a_chain_becomes_a_plan_without_secrets() {
        let c = cfg();
        let d = route_gpt4o(&c);
        let (cluster, chain) = d.failover.clone().unwrap();
        assert_eq!(cluster, "gpt4o-failover");
        let plan = Plan::new(
            &chain,
            "/v1/chat/completions",
            "chat/completions",
            false,
            4096,
        );
        let paths: Vec<&str> = plan.attempts.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v1/chat/completions",
                "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
                "/v1/messages"
            ]
        );
        let models: Vec<&str> = plan.attempts.iter().map(|a| a.model.as_str()).collect();
        assert_eq!(models, ["gpt-4o", "my-gpt4o", "claude-sonnet-4-5"]);
        let encoded = plan.encode();
        assert!(!encoded.contains("\"k\""), "the key itself never travels");
        assert!(encoded.contains("CLAUDE_KEY"));
        assert_eq!(Plan::decode(encoded.as_bytes()), Some(plan.clone()));
        assert_eq!(plan.attempt(1).unwrap().provider, "openai");
        assert_eq!(plan.attempt(3).unwrap().provider, "claude");
        assert!(plan.attempt(0).is_none() && plan.attempt(4).is_none());
        assert_eq!(
            plan.attempt(2).unwrap().credential_header("s"),
            Some(("api-key", "s".to_string()))
        );
        assert_eq!(
            plan.attempt(3).unwrap().credential_header("s"),
            Some(("x-api-key", "s".to_string()))
        );
    }

    #[test]
    fn each_attempt_gets_its_own_body() {
        let c = cfg();
        let d = route_gpt4o(&c);
        let plan = Plan::new(
            &d.failover.unwrap().1,
            "/v1/chat/completions",
            "chat/completions",
            false,
            77,
        );
        let body = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}"#;
        // Unchanged for the provider that takes the client's model.
        assert_eq!(plan.attempt(1).unwrap().body(body, 77).unwrap(), body);
        let azure: Value =
            serde_json::from_slice(&plan.attempt(2).unwrap().body(body, 77).unwrap()).unwrap();
        assert_eq!(azure["model"], "my-gpt4o");
        assert_eq!(azure["messages"][1]["content"], "Hi");
        let claude: Value =
            serde_json::from_slice(&plan.attempt(3).unwrap().body(body, 77).unwrap()).unwrap();
        assert_eq!(claude["model"], "claude-sonnet-4-5");
        assert_eq!(claude["system"], "Be brief.");
        assert_eq!(claude["max_tokens"], 77);
        assert!(plan.attempt(2).unwrap().body(b"{nope", 1).is_err());
    }

    #[test]
    fn config_rejects_bad_chains() {
        let base = json!({
            "providers": {"a": {"cluster": "a"}, "b": {"cluster": "b"}},
            "routes": [{"to": {"provider": "a"}, "fallback": {"cluster": "ab", "to": [{"provider": "b"}]}}]
        });
        let e = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            Config::parse(v.to_string().as_bytes(), &|_| None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(e(&|_| {}), "");
        assert!(
            e(&|v| v["routes"][0]["fallback"]["to"][0]["provider"] = "zz".into())
                .starts_with("routes[0].fallback.to[0].provider: unknown provider")
        );
        assert!(e(&|v| v["routes"][0]["fallback"]["cluster"] = " ".into())
            .starts_with("routes[0].fallback.cluster"));
        assert!(e(&|v| v["routes"][0]["fallback"]["to"] = json!([]))
            .starts_with("routes[0].fallback.to"));
        assert!(e(&|v| {
            v["routes"][0]["to"] = Value::Null;
            v["routes"][0]["split"] = json!([{"provider": "a", "weight": 1}]);
        })
        .starts_with("routes[0].fallback"));
        assert!(e(&|v| v["body_routing"] = false.into())
            .starts_with("routes[0].fallback: needs body_routing"));
    }

    #[test]
    fn the_journal_tells_who_served_and_why_it_failed_over() {
        let mut j = Journal::default();
        j.record(1, "openai", &Outcome::Status(503));
        j.record(2, "azure", &Outcome::without_answer(true, 3, Some(2000)));
        j.record(
            3,
            "claude",
            &Outcome::without_answer(false, 1950, Some(2000)),
        );
        j.record(4, "local", &Outcome::without_answer(false, 10, Some(2000)));
        // A later word on the same attempt replaces the first.
        j.record(4, "local", &Outcome::Status(200));
        let j = Journal::decode(j.encode().as_bytes());
        assert_eq!(j.served(), Some("local"));
        assert_eq!(
            j.summary(),
            "openai:503,azure:connect_failure,claude:timeout,local:200"
        );
        assert_eq!(j.failovers().len(), 3);
        assert!(Outcome::Status(429).failed() && !Outcome::Status(400).failed());
        assert_eq!(
            Outcome::without_answer(false, 10, Some(2000)),
            Outcome::Reset
        );
        let e = Journal(j.0[..3].to_vec()).all_failed(3);
        assert_eq!(e.status, 503);
        assert_eq!(
            e.message,
            "All 3 providers failed (openai: HTTP 503; azure: connection failed; claude: timed out). Please retry later."
        );
        assert!(Journal(j.0[..1].to_vec())
            .all_failed(3)
            .message
            .contains("1 of 3"));
        assert_eq!(Journal::decode(b"garbage"), Journal::default());
    }
}
