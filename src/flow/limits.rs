//! The limits' part of the journey: reserve in the local limits at admission, ask the global
//! rate limit service, and settle both when the request ends.

use super::{Exchange, Step};
use crate::config::FailureMode;
use crate::error::HttpError;
use crate::host::{Buffer, Grpc, Host};
use crate::limits::{self, Cost, Snapshot, TableError};
use crate::names;
use crate::rls;

/// Queued reports a VM keeps at most; beyond it new ones are dropped and counted.
pub const MAX_QUEUED_REPORTS: usize = 10_000;

/// What a finished request still owes the global rate limit service: the tokens it used beyond
/// those charged at admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub consumer: String,
    pub model: Option<String>,
    pub tokens: u64,
    /// The global dollar budgets' remainder: the periods the request was admitted in, and
    /// the units not charged at admission.
    pub budget: Option<rls::BudgetCharge>,
}

/// A budget refusal that resets after `retry_after` (`None`: never passes) is beyond what an
/// SDK's retries wait (a few seconds of back-off): tell it not to retry.
fn beyond_retries(retry_after: Option<std::time::Duration>) -> bool {
    retry_after.is_none_or(|d| d > std::time::Duration::from_secs(60))
}

/// Call the global rate limit service's `ShouldRateLimit` with an encoded request.
pub fn call_rls(
    h: &mut impl Host,
    g: &crate::config::Global,
    message: &[u8],
) -> Result<u32, crate::host::CallError> {
    h.grpc(&Grpc {
        cluster: &g.cluster,
        service: rls::SERVICE,
        method: rls::METHOD,
        message,
        timeout_ms: g.timeout_ms,
    })
}

impl Exchange {
    /// `x-ratelimit-*` headers for the tightest request and token windows known.
    pub fn limit_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        let Some(s) = self.holding.snapshot else {
            return h;
        };
        if let Some(r) = s.requests {
            h.push((names::RATELIMIT_LIMIT_REQUESTS, r.limit.to_string()));
            h.push((names::RATELIMIT_REMAINING_REQUESTS, r.remaining.to_string()));
            h.push((
                names::RATELIMIT_RESET_REQUESTS,
                limits::format_reset(r.reset),
            ));
        }
        if let Some(t) = s.tokens {
            h.push((names::RATELIMIT_LIMIT_TOKENS, t.limit.to_string()));
            h.push((names::RATELIMIT_REMAINING_TOKENS, t.remaining.to_string()));
            h.push((names::RATELIMIT_RESET_TOKENS, limits::format_reset(t.reset)));
        }
        if let Some(pico) = s.usd {
            h.push((
                names::BUDGET_REMAINING,
                format!("{:.6}", pico as f64 / 1e12),
            ));
        }
        h
    }

    /// Reserve `cost` in the local limits of this consumer (and model, when known).
    pub fn limit_locally(
        &mut self,
        h: &impl Host,
        model: Option<&str>,
        cost: Cost,
    ) -> Result<(), HttpError> {
        let cfg = self.config();
        let (Some(limiter), Some(l)) = (self.shared.limiter.clone(), cfg.limits.as_ref()) else {
            return Ok(());
        };
        let consumer = self.record.consumer.clone().unwrap_or_default();
        let scopes = l.scopes(&consumer, self.record.team.as_deref(), model);
        if scopes.is_empty() {
            return Ok(());
        }
        let decision = limiter.borrow_mut().admit(h, &scopes, cost, h.now_ns());
        match decision {
            Ok(Ok(held)) => {
                self.record.untracked = held.untracked;
                self.holding.snapshot = Some(held.snapshot);
                self.holding.held = Some(held);
                Ok(())
            }
            Ok(Err(rejection)) => {
                self.holding.snapshot = Some(rejection.snapshot);
                self.holding.retry_after = rejection.retry_after;
                // A budget that resets later than an SDK's back-off (or never admits this
                // request): the SDK should not retry it.
                self.holding.no_retry = matches!(rejection.reason, limits::Reason::Budget(_))
                    && beyond_retries(rejection.retry_after);
                self.record.limited = Some(rejection.reason.label());
                Err(rejection.error())
            }
            Err(TableError::Contended) => {
                log::warn!("llm-gateway: the limit table is contended; request admitted");
                Ok(())
            }
        }
    }

    /// Give back what the request holds locally (it is refused after all).
    pub fn release_local(&mut self, h: &impl Host) {
        if let (Some(held), Some(limiter)) = (self.holding.held.take(), &self.shared.limiter) {
            let _ = limiter.borrow_mut().cancel(h, &held, h.now_ns());
        }
    }

    /// Ask the global service, charging one request, `tokens` and the admission's part of
    /// the global dollar budgets; `true` while its answer is awaited (the request stays
    /// paused).
    pub fn limit_globally(
        &mut self,
        h: &mut impl Host,
        model: Option<&str>,
        tokens: u64,
        budget: Option<rls::BudgetCharge>,
    ) -> Result<bool, HttpError> {
        let cfg = self.config();
        let Some(g) = cfg.global() else {
            return Ok(false);
        };
        let consumer = self.record.consumer.clone().unwrap_or_default();
        let (bytes, described) =
            rls::request(&g.domain, &consumer, model, 1, tokens, budget.as_ref());
        self.holding.global_budget = budget;
        self.holding.global_tokens = tokens;
        self.holding.global_sent_ms = h.now_ms();
        match call_rls(h, g, &bytes) {
            Ok(token) => {
                self.holding.global_call = Some((token, described));
                self.trace_callout(h, super::trace::GLOBAL_LIMIT);
                Ok(true)
            }
            Err(e) => {
                log::warn!("llm-gateway: could not call the rate limit service: {e:?}");
                match self.without_global(h, "unavailable") {
                    Some(refusal) => Err(refusal),
                    None => Ok(false),
                }
            }
        }
    }

    /// The global service could not answer, for `reason`: `None` to go on (failure mode
    /// open), or the refusal (closed), with what the request held locally given back.
    fn without_global(&mut self, h: &impl Host, reason: &'static str) -> Option<HttpError> {
        self.record.global_failure = Some(reason);
        let cfg = self.config();
        let closed = cfg
            .global()
            .is_some_and(|g| g.failure_mode == FailureMode::Closed);
        if !closed {
            return None;
        }
        self.release_local(h);
        self.holding.global_tokens = 0;
        self.holding.global_budget = None;
        Some(HttpError::limiter_unavailable())
    }

    /// The global service did not answer the pending call: go on or refuse, as configured.
    fn global_failed(&mut self, h: &mut impl Host, reason: &'static str) -> Step {
        match self.without_global(h, reason) {
            Some(refusal) => Step::Reply(self.reject(refusal)),
            None => self.await_credential(h),
        }
    }

    /// The global service answered call `token` (gRPC status `status`, a message of `size`
    /// bytes): go on, refuse, or (not this request's call) nothing.
    pub fn on_global_answer(
        &mut self,
        h: &mut impl Host,
        token: u32,
        status: u32,
        size: usize,
    ) -> Step {
        // Only this request's own call is answered here; any other token leaves it pending.
        if self.holding.global_call.as_ref().map(|(t, _)| *t) != Some(token) {
            return Step::Pause;
        }
        let Some((_, described)) = self.holding.global_call.take() else {
            return Step::Pause;
        };
        if status != 0 {
            // Envoy reports its own deadline as UNAVAILABLE, like a refused connection: tell
            // them apart by the time the answer took. (Envoy arms the deadline on the event
            // loop's cached time, so a callback that ran long before dispatching, such as the
            // slow first request in a fresh VM, sees it fire early.)
            let timeout = self
                .shared
                .config
                .global()
                .map_or(u64::MAX, |g| g.timeout_ms);
            let waited = h.now_ms().saturating_sub(self.holding.global_sent_ms);
            let reason = match status {
                4 => "timeout",
                _ if waited.saturating_mul(10) >= timeout.saturating_mul(9) => "timeout",
                14 => "unavailable",
                _ => "error",
            };
            self.trace_callout_done(h, super::trace::GLOBAL_LIMIT, reason);
            return self.global_failed(h, reason);
        }
        let body = h.body(Buffer::GrpcResponse, size);
        let Some(verdict) = rls::verdict(&body, &described) else {
            self.trace_callout_done(h, super::trace::GLOBAL_LIMIT, "error");
            return self.global_failed(h, "error");
        };
        let result = if verdict.over_limit.is_some() {
            "over_limit"
        } else {
            "ok"
        };
        self.trace_callout_done(h, super::trace::GLOBAL_LIMIT, result);
        self.holding
            .snapshot
            .get_or_insert_with(Snapshot::default)
            .merge(&verdict.snapshot);
        match verdict.over_limit {
            None => self.await_credential(h),
            Some(o) => {
                self.release_local(h);
                self.record.limited = Some(if o.budget { "global_budget" } else { "global" });
                self.holding.retry_after = o.retry_after;
                self.holding.no_retry = o.budget && beyond_retries(o.retry_after);
                let consumer = self.record.consumer.clone().unwrap_or_default();
                let unit = self.shared.config.global().map_or(1, |g| g.unit_pico);
                Step::Reply(self.reject(o.error(&consumer, unit)))
            }
        }
    }

    /// The request is over: correct the local reservation to what was used (tokens, and its
    /// priced cost in the budgets), release its in-flight slot, report the budgets, and queue
    /// what the global service has not been charged yet.
    pub fn settle_limits(&mut self, h: &mut impl Host) {
        let actual = self.record.billable_tokens();
        let cost = self.record.cost.unwrap_or(0);
        let limiter = self.shared.limiter.clone();
        if let (Some(held), Some(limiter)) = (self.holding.held.take(), limiter) {
            let settled = limiter
                .borrow_mut()
                .settle(h, &held, actual, cost, h.now_ns());
            self.record.reservation = Some((held.reserved_tokens, actual));
            if let Ok(s) = settled {
                self.report_budgets(h, s);
            }
        }
        let owed = actual.saturating_sub(self.holding.global_tokens);
        let global = self.shared.config.global().cloned();
        // The budgets' remainder, in whole units (rounded up, the service's side of exact).
        let budget = self.holding.global_budget.take().and_then(|b| {
            let unit = global.as_ref().map_or(1, |g| g.unit_pico.max(1));
            let units = cost.div_ceil(unit).saturating_sub(b.units);
            (units > 0).then_some(rls::BudgetCharge { units, ..b })
        });
        let due = owed > 0 || budget.is_some();
        if global.is_some() && due && self.record.local_outcome.is_none() {
            let mut q = self.shared.reports.borrow_mut();
            if q.len() < MAX_QUEUED_REPORTS {
                q.push(Report {
                    consumer: self.record.consumer.clone().unwrap_or_default(),
                    model: self.record.model_label.clone(),
                    tokens: owed,
                    budget,
                });
            } else {
                self.record.global_failure = Some("report_queue_full");
            }
        }
    }
}

impl Exchange {
    /// What a request charges the global dollar budgets at admission: its prompt at the
    /// cheapest input price (what it will cost at the least; the rest is reported when it
    /// ends, as the service cannot give back), at least one unit, in the calendar periods of
    /// now. A model without a price is refused or let through uncharged, as
    /// `limits.budgets.unpriced` says.
    pub(super) fn global_budget_charge(
        &mut self,
        h: &impl Host,
        decision: &crate::route::Decision,
        model: &str,
        prompt: u64,
    ) -> Result<Option<rls::BudgetCharge>, HttpError> {
        let cfg = self.config();
        let Some(g) = cfg.global().filter(|g| !g.budgets.is_empty()) else {
            return Ok(None);
        };
        let Some(p) =
            self.budget_price(&cfg, decision.provider, &decision.upstream_model, model)?
        else {
            return Ok(None);
        };
        let pico = prompt.saturating_mul(p.input.min(p.cached_input));
        let t = g.calendar.now(h.now_ns());
        let periods = g
            .budgets
            .iter()
            .map(|&w| {
                let key = match w {
                    limits::BudgetWindow::Month => rls::KEY_BUDGET_MONTH,
                    _ => rls::KEY_BUDGET_DAY,
                };
                let ends = g.calendar.end(w, t);
                let reset = std::time::Duration::from_nanos(ends.saturating_sub(t));
                (key, g.calendar.period(w, t), reset)
            })
            .collect();
        Ok(Some(rls::BudgetCharge {
            team: self.record.team.clone(),
            periods,
            units: (pico / g.unit_pico.max(1)).max(1),
        }))
    }

    /// A settled request's budgets: each threshold it crossed (a metric and a usage event, once
    /// per threshold per window) and what each calendar budget now holds (a gauge). Series are
    /// named by configured consumers and teams only; per-model budgets and consumers without a
    /// label of their own raise events but no series.
    fn report_budgets(&mut self, h: &mut impl Host, s: limits::Settled) {
        use crate::metrics::{stat_name, MetricUpdate};
        use names::metric;
        let cfg = self.config();
        let who = |scope: &str| -> Option<(&'static str, String)> {
            if scope.contains(" / ") {
                return None; // a per-model rule's budget
            }
            if let Some(team) = scope.strip_prefix(limits::TEAM_SCOPE) {
                return Some((metric::TAG_TEAM, team.to_string()));
            }
            cfg.consumer_labels
                .contains(scope)
                .then(|| (metric::TAG_CONSUMER, scope.to_string()))
        };
        for spent in &s.spent {
            if let Some((tag, name)) = who(&spent.scope) {
                let ppm = (u128::from(spent.spent) * 1_000_000 / u128::from(spent.limit.max(1)))
                    .min(u128::from(u64::MAX)) as u64;
                h.metric(&MetricUpdate {
                    kind: crate::metrics::Kind::Gauge,
                    name: stat_name(
                        metric::BUDGET_SPENT,
                        &[(tag, &name), (metric::TAG_WINDOW, spent.window.name())],
                    ),
                    value: ppm,
                });
            }
        }
        for c in s.crossings {
            let percent = (c.threshold_ppm / 10_000).to_string();
            if let Some((tag, name)) = who(&c.scope) {
                h.metric(&MetricUpdate::counter(
                    stat_name(
                        metric::BUDGET_ALERTS,
                        &[
                            (tag, &name),
                            (metric::TAG_WINDOW, c.window.name()),
                            (metric::TAG_THRESHOLD, &percent),
                        ],
                    ),
                    1,
                ));
            }
            if let Some(x) = self.shared.exporter.clone() {
                let e = crate::usage::Event::budget_alert(&c, &self.record, h.now_ns());
                super::finish::export_event(h, &x, e);
            }
        }
    }
}
