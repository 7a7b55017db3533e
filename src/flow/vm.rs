//! What a VM does besides requests: take its configuration, load tokenizers ahead of traffic,
//! and, on its tick, post usage events, report usage to the global rate limit service and add
//! records to the vector store; when it stops, post what is left.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use hashbrown::{HashMap, HashSet};

use super::limits::call_rls;
use super::semantic::{failure, status_of_call};
use super::{Exchange, Shared};
use crate::config::Config;
use crate::cooldown::{self, Cooling};
use crate::export::{Done, Exporter, Sink};
use crate::host::{self, Host, Post};
use crate::metrics::{self, Kind, MetricUpdate};
use crate::names::{self, metric};
use crate::rls;
use crate::usage;

/// How often a VM sends its queued end-of-request reports to the global rate limit service,
/// posts usage events and adds vector-store records.
pub const REPORT_PERIOD: Duration = Duration::from_millis(100);
/// The tick of a VM with nothing else to do but sweep ended cool-downs (their gauges lag
/// their end by at most this; routing reads the end itself).
pub const COOLDOWN_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// What the VM was configured as.
pub enum Role {
    /// The gateway filter of the HTTP connection manager.
    Gateway(Shared),
    /// The upstream filter of a failover cluster (`{"role": "upstream"}`).
    Upstream,
}

/// A VM's own state, across requests.
pub struct Vm {
    pub role: Role,
    /// The VM is stopping and waits for its last usage posts.
    draining: bool,
    /// Pending posts of records to the external vector store.
    vector_adds: HashSet<u32>,
}

/// Why a configuration was refused.
pub type ConfigureError = String;

impl Vm {
    /// Configure from the plugin configuration `bytes`; the tick period to ask for.
    pub fn configure(h: &impl Host, bytes: &[u8]) -> Result<(Vm, Duration), ConfigureError> {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(bytes) {
            if let Some(role) = o.get("role") {
                if role == "upstream" && o.len() == 1 {
                    log::info!(
                        "llm-gateway: configured as the upstream filter of a failover cluster"
                    );
                    Cooling::init(h);
                    return Ok((Vm::new(Role::Upstream), Duration::ZERO));
                }
                return Err(
                    "the upstream filter's configuration is exactly {\"role\": \"upstream\"}"
                        .to_string(),
                );
            }
        }
        let c = Config::parse(bytes, &|k| h.env(k)).map_err(|e| e.to_string())?;
        log::info!(
            "llm-gateway: configured {} providers, {} routes, {} consumers",
            c.providers.len(),
            c.routes.len(),
            c.consumers.len()
        );
        let export = c.usage_export.clone();
        let traces = c.tracing.as_ref().map(|t| t.export.clone());
        Cooling::init(h);
        let mut shared = Shared::new(c);
        if let Some(l) = &shared.limiter {
            l.borrow().init(h);
        }
        let node = host::property_string(h, &["node", "id"]);
        shared.exporter = export.map(|e| Rc::new(RefCell::new(usage::exporter(e, node.clone()))));
        shared.tracer = traces.map(|e| {
            let frame = crate::otlp::frame(crate::otlp::Signal::Traces, &e.service_name, node);
            Rc::new(RefCell::new(Exporter::new(e, Sink::Traces, frame)))
        });
        // Nothing to load for the tokenizer: its rank tables are static data of the module.
        let vm = Vm::new(Role::Gateway(shared));
        let tick = vm.idle_tick();
        Ok((vm, tick))
    }

    fn new(role: Role) -> Vm {
        Vm {
            role,
            draining: false,
            vector_adds: HashSet::new(),
        }
    }

    /// A new request's exchange (`context_id`: its context in this VM); `None` for the
    /// upstream role.
    pub fn exchange(&self, context_id: u32) -> Option<Exchange> {
        match &self.role {
            Role::Gateway(s) => {
                let mut x = Exchange::new(s.clone());
                x.context_id = context_id;
                Some(x)
            }
            Role::Upstream => None,
        }
    }

    fn shared(&self) -> Option<&Shared> {
        match &self.role {
            Role::Gateway(s) => Some(s),
            Role::Upstream => None,
        }
    }

    /// The tick period: the report period when something runs on the tick, else none.
    pub fn idle_tick(&self) -> Duration {
        let Some(s) = self.shared() else {
            return Duration::ZERO;
        };
        let c = &s.config;
        let ticks = c.global().is_some()
            || s.exporter.is_some()
            || s.tracer.is_some()
            || c.chroma().is_some();
        if ticks || s.tokens.is_some() {
            REPORT_PERIOD
        } else if c.cools_down() {
            // Cool-downs need a tick that sets their gauges back to 0 when they end.
            COOLDOWN_SWEEP_PERIOD
        } else {
            Duration::ZERO
        }
    }

    /// The VM's tick; the tick period to ask for next, if it changes.
    pub fn on_tick(&mut self, h: &mut impl Host) -> Option<Duration> {
        if let Some(t) = self.shared().and_then(|s| s.tokens.clone()) {
            t.borrow_mut().on_tick(h);
        }
        self.flush_reports(h);
        self.flush_exports(h, false);
        self.flush_vector_adds(h);
        self.sweep_cooldowns(h);
        Some(self.idle_tick())
    }

    /// Cool-downs that ended: their gauge back to 0, their line out of the table.
    fn sweep_cooldowns(&mut self, h: &mut impl Host) {
        let Some(s) = self.shared() else {
            return;
        };
        for (e, live) in Cooling::sweep(h, h.now_ms()) {
            // Only the configuration's own providers and keys are metric labels.
            let known = s
                .config
                .providers
                .iter()
                .any(|p| p.name == e.provider && e.key < p.keys());
            if !known {
                continue;
            }
            let name = cooldown::key_stat(metric::COOLING, &e.provider, e.key);
            h.metric(&MetricUpdate::gauge(name, u64::from(live)));
        }
    }

    /// The VM's exporters: usage events, spans.
    fn exporters(&self) -> Vec<Rc<RefCell<Exporter>>> {
        let Some(s) = self.shared() else {
            return Vec::new();
        };
        s.exporter.iter().chain(s.tracer.iter()).cloned().collect()
    }

    /// Post the batches of usage events and spans that are due (all of them when `drain`).
    pub fn flush_exports(&mut self, h: &mut impl Host, drain: bool) {
        for x in self.exporters() {
            flush(h, &x, drain);
        }
    }

    /// Send the queued reports, one call per consumer and model.
    fn flush_reports(&mut self, h: &mut impl Host) {
        let Some(s) = self.shared() else {
            return;
        };
        let Some(g) = s.config.global().cloned() else {
            return;
        };
        let queued = std::mem::take(&mut *s.reports.borrow_mut());
        // One call per consumer, model and budget periods (the time left in a period only
        // phrases a refusal: not part of the key).
        type Key = (
            String,
            Option<String>,
            Option<(Option<String>, Vec<(&'static str, String)>)>,
        );
        let mut merged: HashMap<Key, (u64, Option<rls::BudgetCharge>)> = HashMap::new();
        for r in queued {
            let periods = r.budget.as_ref().map(|b| {
                let p = b.periods.iter().map(|(k, v, _)| (*k, v.clone())).collect();
                (b.team.clone(), p)
            });
            let e = merged.entry((r.consumer, r.model, periods)).or_default();
            e.0 = e.0.saturating_add(r.tokens);
            match (&mut e.1, r.budget) {
                (Some(have), Some(b)) => have.units = have.units.saturating_add(b.units),
                (slot, b) => *slot = slot.take().or(b),
            }
        }
        for ((consumer, model, _), (tokens, budget)) in merged {
            let (bytes, _) = rls::request(
                &g.domain,
                &consumer,
                model.as_deref(),
                0,
                tokens,
                budget.as_ref(),
            );
            if let Err(e) = call_rls(h, &g, &bytes) {
                log::warn!("llm-gateway: could not report usage to the rate limit service: {e:?}");
                count(h, names::metric::GLOBAL_REPORT_FAILURES);
            }
        }
    }

    /// Post the queued Chroma records.
    fn flush_vector_adds(&mut self, h: &mut impl Host) {
        let Some(s) = self.shared() else {
            return;
        };
        let (Some(stores), Some(ch)) = (s.caches.clone(), s.config.chroma().cloned()) else {
            return;
        };
        let adds = std::mem::take(&mut *stores.adds.borrow_mut());
        for (path, body) in adds {
            let post = Post {
                method: "POST",
                cluster: &ch.cluster,
                authority: &ch.authority,
                path: &path,
                headers: &[],
                body: &body,
                timeout_ms: ch.timeout_ms,
            };
            match h.post(&post) {
                Ok(t) => {
                    self.vector_adds.insert(t);
                }
                Err(e) => {
                    log::warn!("llm-gateway: cannot add to the vector store: {e:?}");
                    count_semantic_failure(h, "store_unavailable");
                }
            }
        }
    }

    /// A callout the VM made answered (its body `size` bytes): a token fetch, a vector-store
    /// add or a usage post.
    pub fn on_call_answer(&mut self, h: &mut impl Host, token: u32, size: usize) {
        if let Some(t) = self.shared().and_then(|s| s.tokens.clone()) {
            if t.borrow_mut().on_call_answer(h, token, size) {
                return;
            }
        }
        if self.vector_adds.remove(&token) {
            let status = status_of_call(h);
            if status != Some(200) && status != Some(201) {
                log::warn!("llm-gateway: the vector store refused a record: {status:?}");
                count_semantic_failure(h, failure(status, "store_unavailable", "store_error"));
            }
            return;
        }
        let status = h.header(crate::host::Map::CallResponseHeaders, names::STATUS);
        let ok = status
            .as_deref()
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|s| (200..300).contains(&s));
        let exporters = self.exporters();
        for x in &exporters {
            let sink = x.borrow().sink;
            let done = x.borrow_mut().answered(token, ok, h.now_ms());
            if let Some(done) = done {
                if !ok {
                    log::warn!(
                        "llm-gateway: the collector of {} answered {}",
                        sink.names().records,
                        status.as_deref().unwrap_or("nothing")
                    );
                }
                export_done(h, sink, done, status.as_deref().unwrap_or("no_response"));
                break;
            }
        }
        if self.draining && exporters.iter().all(|x| x.borrow().in_flight() == 0) {
            h.done();
        }
    }

    /// A report to the global rate limit service answered with gRPC `status`.
    pub fn on_grpc_answer(&mut self, h: &mut impl Host, status: u32) {
        if status != 0 {
            log::warn!(
                "llm-gateway: usage report to the rate limit service failed (gRPC status {status})"
            );
            count(h, names::metric::GLOBAL_REPORT_FAILURES);
        }
    }

    /// The VM is going away (new configuration, shutdown): post what is left; `true` when
    /// nothing is left in flight (else the host waits for `done`).
    pub fn on_done(&mut self, h: &mut impl Host) -> bool {
        self.flush_exports(h, true);
        let waiting = self.exporters().iter().any(|x| x.borrow().in_flight() > 0);
        self.draining = waiting;
        !waiting
    }
}

fn count(h: &mut impl Host, name: &str) {
    h.metric(&MetricUpdate {
        kind: Kind::Counter,
        name: name.to_string(),
        value: 1,
    });
}

fn count_semantic_failure(h: &mut impl Host, reason: &str) {
    count(
        h,
        &metrics::stat_name(
            names::metric::CACHE_SEMANTIC_FAILURES,
            &[(names::metric::TAG_REASON, reason)],
        ),
    );
}

/// Count what became of a post of `sink`'s records.
fn export_done(h: &mut impl Host, sink: Sink, done: Done, failure: &str) {
    use names::metric::TAG_REASON;
    let names = sink.names();
    let counter = |name: String, value: usize| MetricUpdate {
        kind: Kind::Counter,
        name,
        value: value as u64,
    };
    let gauge = |n: usize| -i64::try_from(n).unwrap_or(i64::MAX);
    match done {
        Done::Delivered(n) => {
            h.metric(&counter(names.sent.to_string(), n));
            h.add_gauge(names.buffered, gauge(n));
        }
        Done::Retrying | Done::Dropped(_) => {
            let failures = metrics::stat_name(names.post_failures, &[(TAG_REASON, failure)]);
            h.metric(&counter(failures, 1));
            if let Done::Dropped(n) = done {
                log::warn!(
                    "llm-gateway: dropped {n} {} after repeated failures to post them",
                    names.records
                );
                let dropped =
                    metrics::stat_name(names.dropped, &[(TAG_REASON, "retries_exhausted")]);
                h.metric(&counter(dropped, n));
                h.add_gauge(names.buffered, gauge(n));
            }
        }
    }
}

/// Post `x`'s batches that are due (all of them when `drain`).
fn flush(h: &mut impl Host, x: &Rc<RefCell<Exporter>>, drain: bool) {
    let now = h.now_ms();
    let batches = x.borrow_mut().take_due(now, drain);
    if batches.is_empty() {
        return;
    }
    let (cfg, sink) = (x.borrow().cfg.clone(), x.borrow().sink);
    let extra: Vec<(&str, &str)> = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for b in batches {
        let post = Post {
            method: "POST",
            cluster: &cfg.cluster,
            authority: &cfg.authority,
            path: &cfg.path,
            headers: &extra,
            body: &b.body,
            timeout_ms: cfg.timeout_ms,
        };
        match h.post(&post) {
            Ok(token) => x.borrow_mut().sent(token, b),
            Err(e) => {
                log::warn!(
                    "llm-gateway: cannot post {} to cluster {}: {e:?}",
                    sink.names().records,
                    cfg.cluster
                );
                let done = x.borrow_mut().failed(b, now);
                export_done(h, sink, done, "dispatch");
            }
        }
    }
}
