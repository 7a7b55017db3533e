//! Access tokens the VM fetches for its providers (`auth: gcp-metadata`, see `gcp_token`).
//! The root context fetches each provider's token on its tick and again at half its life; a
//! request that finds no usable token waits, paused, and the root context resumes it with the
//! token as soon as one is had (by this VM or another worker's), or refuses it after
//! [`FIRST_TOKEN_WAIT_MS`].

use std::cell::Cell;
use std::rc::Rc;

use super::{set_request_header, Exchange, Step};
use crate::config::{AuthStyle, Config};
use crate::error::HttpError;
use crate::gcp_token::{self, Token};
use crate::host::{Host, Map, Post};
use crate::metrics::{self, Kind, MetricUpdate};
use crate::names;

/// Longest a request waits for its provider's first token before it is refused.
pub const FIRST_TOKEN_WAIT_MS: u64 = 10_000;
/// Most requests one VM holds waiting for tokens; more are refused at once.
const MAX_WAITING: usize = 4096;
const FETCH_TIMEOUT_MS: u64 = 5_000;
/// A failed fetch is tried again after 250 ms, doubling up to this.
const MAX_BACKOFF_MS: u64 = 30_000;

/// The VM's token sources and the requests waiting for them.
#[derive(Default)]
pub struct Tokens {
    sources: Vec<Source>,
    waiting: Vec<Waiter>,
}

struct Source {
    provider: String,
    cluster: String,
    in_flight: Option<u32>,
    retry_at_ms: u64,
    failures: u32,
}

/// A paused request waiting for `provider`'s token.
struct Waiter {
    context_id: u32,
    provider: String,
    since_ms: u64,
    /// What it is told if no token comes, in its client's API; the request reads `refused`
    /// to account for it.
    status: u32,
    body: Vec<u8>,
    refused: Rc<Cell<Option<&'static str>>>,
}

impl Tokens {
    /// The token sources `config` needs; `None` when no provider fetches tokens.
    pub fn new(config: &Config) -> Option<Tokens> {
        let sources: Vec<Source> = config
            .providers
            .iter()
            .filter(|p| p.auth == AuthStyle::GcpMetadata)
            .filter_map(|p| {
                Some(Source {
                    provider: p.name.clone(),
                    cluster: p.token_cluster.clone()?,
                    in_flight: None,
                    retry_at_ms: 0,
                    failures: 0,
                })
            })
            .collect();
        (!sources.is_empty()).then(|| Tokens {
            sources,
            waiting: Vec::new(),
        })
    }

    /// The root context's tick: fetch the tokens that are missing or due, then serve the
    /// waiting requests.
    pub fn on_tick(&mut self, h: &mut impl Host) {
        let now = h.now_ms();
        for s in &mut self.sources {
            let due = gcp_token::read(h, &s.provider).is_none_or(|t| t.refresh_due(now));
            if !due || s.in_flight.is_some() || now < s.retry_at_ms {
                continue;
            }
            let headers = [gcp_token::METADATA_FLAVOR];
            let get = Post {
                method: "GET",
                cluster: &s.cluster,
                authority: gcp_token::AUTHORITY,
                path: gcp_token::TOKEN_PATH,
                headers: &headers,
                body: &[],
                timeout_ms: FETCH_TIMEOUT_MS,
            };
            match h.post(&get) {
                Ok(t) => s.in_flight = Some(t),
                Err(e) => {
                    log::warn!(
                        "llm-gateway: cannot ask cluster {} for {}'s access token: {e:?}",
                        s.cluster,
                        s.provider
                    );
                    s.failed(h, now, "dispatch");
                }
            }
        }
        self.serve_waiting(h);
    }

    /// Whether `token` is one of this VM's token fetches; if so, its answer is read.
    pub fn on_call_answer(&mut self, h: &mut impl Host, token: u32, size: usize) -> bool {
        let Some(s) = self.sources.iter_mut().find(|s| s.in_flight == Some(token)) else {
            return false;
        };
        s.in_flight = None;
        let now = h.now_ms();
        let status = h.header(Map::CallResponseHeaders, names::STATUS);
        let body = h.body(crate::host::Buffer::CallResponseBody, size);
        match Token::from_answer(&body, now).filter(|_| status.as_deref() == Some("200")) {
            Some(t) => {
                gcp_token::write(h, &s.provider, &t);
                s.failures = 0;
                count(h, &s.provider, "ok");
            }
            None => {
                log::warn!(
                    "llm-gateway: the metadata server gave no access token for {} (status {})",
                    s.provider,
                    status.as_deref().unwrap_or("none")
                );
                s.failed(h, now, "error");
            }
        }
        self.serve_waiting(h);
        true
    }

    /// Resume the waiting requests whose token is here; refuse those that waited too long or
    /// whose stream is gone.
    fn serve_waiting(&mut self, h: &mut impl Host) {
        if self.waiting.is_empty() {
            return;
        }
        let now = h.now_ms();
        let waiting = std::mem::take(&mut self.waiting);
        for w in waiting {
            let token = gcp_token::read(h, &w.provider).filter(|t| t.usable(now));
            let late = now.saturating_sub(w.since_ms) >= FIRST_TOKEN_WAIT_MS;
            if token.is_none() && !late {
                self.waiting.push(w);
                continue;
            }
            if !h.switch_context(Some(w.context_id)) {
                continue; // the client went away
            }
            match token {
                Some(t) => {
                    let (name, value) = bearer(&t);
                    h.set_header(Map::RequestHeaders, name, Some(&value));
                    h.resume_request();
                }
                None => {
                    w.refused
                        .set(Some(HttpError::credential_unavailable().outcome));
                    let headers = [(names::CONTENT_TYPE, "application/json")];
                    h.send_reply(w.status, &headers, &w.body);
                }
            }
            h.switch_context(None);
        }
    }
}

impl Source {
    fn failed(&mut self, h: &mut impl Host, now: u64, reason: &str) {
        self.failures = self.failures.saturating_add(1);
        let backoff = 250u64
            .saturating_mul(1 << self.failures.min(8))
            .min(MAX_BACKOFF_MS);
        self.retry_at_ms = now.saturating_add(backoff);
        count(h, &self.provider, reason);
    }
}

fn bearer(t: &Token) -> (&'static str, String) {
    (names::AUTHORIZATION, format!("Bearer {}", t.value))
}

/// Count a token fetch's outcome for `provider` (a configured name).
fn count(h: &mut impl Host, provider: &str, outcome: &str) {
    h.metric(&MetricUpdate {
        kind: Kind::Counter,
        name: metrics::stat_name(
            names::metric::CREDENTIAL_REFRESHES,
            &[
                (names::metric::TAG_PROVIDER, provider),
                (names::metric::TAG_OUTCOME, outcome),
            ],
        ),
        value: 1,
    });
}

impl Exchange {
    /// The request is ready to go: with its provider's token if it takes one the VM fetches,
    /// or waiting (paused) for that token.
    pub(super) fn await_credential(&mut self, h: &mut impl Host) -> Step {
        let Some(provider) = self.upstream.token_provider.clone() else {
            return Step::Continue;
        };
        let now = h.now_ms();
        if let Some(t) = gcp_token::read(h, &provider).filter(|t| t.usable(now)) {
            let (name, value) = bearer(&t);
            set_request_header(h, name, Some(&value));
            return Step::Continue;
        }
        let e = HttpError::credential_unavailable();
        let Some(tokens) = self.shared.tokens.clone() else {
            return Step::Reply(self.reject(e));
        };
        let mut tokens = tokens.borrow_mut();
        if tokens.waiting.len() >= MAX_WAITING {
            drop(tokens);
            return Step::Reply(self.reject(e));
        }
        let refused = Rc::new(Cell::new(None));
        tokens.waiting.push(Waiter {
            context_id: self.context_id,
            provider,
            since_ms: now,
            status: e.status,
            body: self.error_body(&e),
            refused: refused.clone(),
        });
        self.upstream.credential_refused = Some(refused);
        Step::Pause
    }

    /// Whether the root context refused the request while it waited for a token: then it is
    /// accounted as that local refusal.
    pub(super) fn take_credential_refusal(&mut self) {
        let Some(outcome) = self
            .upstream
            .credential_refused
            .as_ref()
            .and_then(|c| c.get())
        else {
            return;
        };
        self.record.local_outcome = Some(outcome);
        self.record.status = HttpError::credential_unavailable().status;
    }
}
