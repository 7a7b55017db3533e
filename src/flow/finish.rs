//! Stage 4: the request is over (Envoy's access-log callback). Settle the limits, price the
//! record, store a cacheable answer, and report: properties for the access log, metrics, the
//! usage event, the spans. Every request the gateway handled is reported here exactly once.

use std::cell::RefCell;

use super::outbound::journal;
use super::Exchange;
use crate::host::{self, Host};
use crate::metrics::{self, Kind, MetricUpdate};
use crate::names;
use crate::usage::{self, Exporter};

/// Queue a finished request's usage event; a full buffer drops it (counted).
pub fn export_event(h: &mut impl Host, exporter: &RefCell<Exporter>, e: usage::Event) {
    let record = e.encode(exporter.borrow().cfg.format);
    queue(h, exporter, vec![record]);
}

/// Queue one request's encoded `records` in `exporter`, all of them or, when its buffer has
/// no room for them all, none: those are dropped and counted.
pub fn queue(h: &mut impl Host, exporter: &RefCell<Exporter>, records: Vec<Vec<u8>>) {
    let mut x = exporter.borrow_mut();
    let (sink, n) = (x.sink.names(), records.len());
    if !x.has_room(n) {
        drop(x);
        h.metric(&MetricUpdate {
            kind: Kind::Counter,
            name: metrics::stat_name(sink.dropped, &[(names::metric::TAG_REASON, "buffer_full")]),
            value: n as u64,
        });
        return;
    }
    let now_ms = h.now_ms();
    for r in records {
        x.push(r, now_ms);
    }
    drop(x);
    h.add_gauge(sink.buffered, i64::try_from(n).unwrap_or(i64::MAX));
}

impl Exchange {
    /// The request is over.
    pub fn finish(&mut self, h: &mut impl Host) {
        if self.inbound.endpoint.is_none() {
            return;
        }
        self.take_credential_refusal();
        let now = h.now_ms();
        if let Some(m) = self.outbound.meter.take() {
            self.record.learned = m.finish();
        }
        if self.record.status == 0 {
            let code = host::property_u64(h, &["response", "code"]).unwrap_or(0);
            self.record.status = u32::try_from(code).unwrap_or(0);
        }
        if self.upstream.chain_len > 0 {
            let journal = journal(h);
            if let Some(p) = journal.served() {
                self.record.provider = Some(p.to_string());
                self.record.provider_key = journal
                    .0
                    .len()
                    .checked_sub(1)
                    .and_then(|i| self.upstream.chain_keys.get(i).copied().flatten());
            }
            self.record.journal = Some(journal);
        }
        self.cache_store(h);
        let start = self.inbound.start_ms;
        self.record.duration_ms = now.saturating_sub(start);
        self.record.ttft_ms = self
            .record
            .learned
            .first_token_ms
            .map(|t| t.saturating_sub(start));
        // Priced before the limits settle: a budget settles to the actual cost.
        let cfg = self.config();
        self.record.price(&cfg.prices);
        self.settle_limits(h);
        for (name, value) in self.record.properties() {
            h.set_property(name, &value);
        }
        self.write_metrics(h);
        if let Some(x) = self.shared.exporter.clone() {
            let id = self
                .record
                .request_id
                .clone()
                .or_else(|| host::property_string(h, &names::host::REQUEST_ID));
            let event = usage::Event::new(
                &self.record,
                id,
                start.saturating_mul(1_000_000),
                h.now_ns(),
            );
            export_event(h, &x, event);
        }
        self.export_spans(h);
    }

    /// The record's metrics. Label values come from the configuration only (see
    /// `route::Decision::model_label` and `Config::consumer_label`): a client's string never
    /// names a series; when the VM has no room for new series they fold into `other`.
    fn write_metrics(&self, h: &mut impl Host) {
        let cfg = self.config();
        let model = self
            .record
            .model_label
            .as_deref()
            .unwrap_or(names::metric::NONE);
        let consumer = self
            .record
            .consumer
            .as_deref()
            .map_or(names::metric::NONE, |c| cfg.consumer_label(c));
        let team = self.record.team.as_deref();
        let mut updates = self.record.metrics(model, consumer, team);
        if updates.iter().any(|u| !h.metric_room(&u.name)) {
            let other = names::metric::OTHER;
            updates = self.record.metrics(other, other, team.map(|_| other));
        }
        updates.push(MetricUpdate {
            kind: Kind::Gauge,
            name: names::metric::VM_MEMORY.to_string(),
            value: h.memory_bytes(),
        });
        for u in &updates {
            h.metric(u);
        }
    }
}
