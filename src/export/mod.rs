//! What the VM sends to collectors, batched: usage events (`crate::usage`) and spans
//! (`crate::trace`) share this one bounded queue, its configuration and its counting.
//!
//! The `Exporter` is the pure queue; the shell pushes encoded records from `on_log` (never
//! blocking, never failing the request), takes due batches from `on_tick`, posts them with
//! `dispatch_http_call` and reports each post's outcome back. The buffer is bounded: records
//! beyond `max_buffered_events` are dropped, and a batch whose post failed is retried with
//! back-off at most `max_retries` times and then dropped. Everything dropped is counted, per
//! sink ([`Sink::names`]).

use std::collections::VecDeque;

use hashbrown::HashMap;

pub mod config;

pub use config::{
    Export, Format, RawExport, Section, DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL_MS,
    DEFAULT_MAX_BUFFERED_EVENTS, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, MAX_BATCH_SIZE,
    MAX_BUFFERED_EVENTS, MAX_FLUSH_INTERVAL_MS, MAX_RETRIES,
};

/// Posts a VM has in flight at most; further batches wait in the buffer.
pub const MAX_IN_FLIGHT: usize = 4;
/// Longest wait before a failed batch is retried.
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// What a sink sends: its records, and the metrics that count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Usage events (`usage_export`).
    Usage,
    /// Spans (`tracing.export`).
    Traces,
}

/// A sink's metric names and how its log lines name its records.
pub struct SinkNames {
    pub sent: &'static str,
    pub dropped: &'static str,
    pub post_failures: &'static str,
    pub buffered: &'static str,
    /// `usage events`, `spans`.
    pub records: &'static str,
}

impl Sink {
    pub fn names(self) -> &'static SinkNames {
        use crate::names::metric as m;
        match self {
            Sink::Usage => &SinkNames {
                sent: m::USAGE_SENT,
                dropped: m::USAGE_DROPPED,
                post_failures: m::USAGE_POST_FAILURES,
                buffered: m::USAGE_BUFFERED,
                records: "usage events",
            },
            Sink::Traces => &SinkNames {
                sent: m::SPANS_SENT,
                dropped: m::SPANS_DROPPED,
                post_failures: m::SPANS_POST_FAILURES,
                buffered: m::SPANS_BUFFERED,
                records: "spans",
            },
        }
    }
}

/// Records encoded for one post.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub events: usize,
    /// Posts of this batch that failed so far.
    pub failures: u32,
    not_before_ms: u64,
}

/// What became of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The collector took this many records.
    Delivered(usize),
    /// Failed; the batch waits for another try.
    Retrying,
    /// Failed for the last time: this many records are dropped.
    Dropped(usize),
}

/// A VM's bounded buffer of one sink's records.
#[derive(Debug)]
pub struct Exporter {
    pub cfg: Export,
    pub sink: Sink,
    /// What every post starts and ends with: for OTLP, the export request with its resource
    /// (`service.name`, …) and scope up to the records' array; for JSON, `[`.
    prefix: Vec<u8>,
    suffix: &'static [u8],
    /// Records encoded as they come (in `on_log`, after the response), so a post only joins
    /// them: the tick that posts a batch does not stall the worker.
    queue: VecDeque<Vec<u8>>,
    /// When the oldest queued event was queued (ms).
    oldest_ms: u64,
    retrying: VecDeque<Batch>,
    in_flight: HashMap<u32, Batch>,
    held: usize,
}

impl Exporter {
    /// `frame`: what every post starts and ends with.
    pub fn new(cfg: Export, sink: Sink, frame: (Vec<u8>, &'static [u8])) -> Exporter {
        let (prefix, suffix) = frame;
        Exporter {
            cfg,
            sink,
            prefix,
            suffix,
            queue: VecDeque::new(),
            oldest_ms: 0,
            retrying: VecDeque::new(),
            in_flight: HashMap::new(),
            held: 0,
        }
    }

    /// Records held: queued, waiting for a retry, or in flight.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether `n` more records fit in the buffer.
    pub fn has_room(&self, n: usize) -> bool {
        self.held.saturating_add(n) <= self.cfg.max_buffered_events
    }

    /// Queue an encoded record (an element of the post's array); `false` when the buffer is
    /// full and the record is dropped.
    pub fn push(&mut self, record: Vec<u8>, now_ms: u64) -> bool {
        if !self.has_room(1) {
            return false;
        }
        if self.queue.is_empty() {
            self.oldest_ms = now_ms;
        }
        self.queue.push_back(record);
        self.held += 1;
        true
    }

    /// Batches to post now: failed batches whose back-off is over, then full batches, then
    /// everything queued once the oldest event is `flush_interval_ms` old, as long as fewer
    /// than `MAX_IN_FLIGHT` posts are out. `drain` takes everything at once (the VM is
    /// stopping).
    pub fn take_due(&mut self, now_ms: u64, drain: bool) -> Vec<Batch> {
        let mut out = Vec::new();
        let room =
            |out: &Vec<Batch>, in_flight: usize| drain || in_flight + out.len() < MAX_IN_FLIGHT;
        while room(&out, self.in_flight.len()) {
            match self.retrying.front() {
                Some(b) if drain || b.not_before_ms <= now_ms => {
                    if let Some(b) = self.retrying.pop_front() {
                        out.push(b);
                    }
                }
                _ => break,
            }
        }
        let aged = !self.queue.is_empty()
            && now_ms.saturating_sub(self.oldest_ms) >= self.cfg.flush_interval_ms;
        while room(&out, self.in_flight.len())
            && (self.queue.len() >= self.cfg.batch_size
                || (!self.queue.is_empty() && (aged || drain)))
        {
            let n = self.queue.len().min(self.cfg.batch_size);
            let records: Vec<Vec<u8>> = self.queue.drain(..n).collect();
            out.push(Batch {
                body: self.body(records.iter().map(Vec::as_slice)),
                events: n,
                failures: 0,
                not_before_ms: 0,
            });
        }
        if !self.queue.is_empty() && aged {
            // What is left waits for a free slot; it is still overdue.
            self.oldest_ms = self.oldest_ms.min(now_ms);
        }
        out
    }

    /// A batch was posted and awaits its answer under `token`.
    pub fn sent(&mut self, token: u32, batch: Batch) {
        self.in_flight.insert(token, batch);
    }

    /// The answer to post `token`: `ok` when the collector accepted it.
    pub fn answered(&mut self, token: u32, ok: bool, now_ms: u64) -> Option<Done> {
        let b = self.in_flight.remove(&token)?;
        Some(if ok {
            self.held = self.held.saturating_sub(b.events);
            Done::Delivered(b.events)
        } else {
            self.failed(b, now_ms)
        })
    }

    /// A post failed (or could not be made): retry it later, or drop it.
    pub fn failed(&mut self, mut b: Batch, now_ms: u64) -> Done {
        b.failures += 1;
        if b.failures > self.cfg.max_retries {
            self.held = self.held.saturating_sub(b.events);
            return Done::Dropped(b.events);
        }
        let backoff = self
            .cfg
            .flush_interval_ms
            .saturating_mul(1 << (b.failures - 1).min(16))
            .min(MAX_BACKOFF_MS);
        b.not_before_ms = now_ms.saturating_add(backoff);
        self.retrying.push_back(b);
        Done::Retrying
    }

    /// A post's body from encoded records, sized by what they hold (not by `batch_size`).
    pub fn body<'a>(&self, records: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
        // The records, a comma between each two, and the frame.
        let records_len = records
            .clone()
            .map(|r| r.len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        let mut out = Vec::with_capacity(self.prefix.len() + records_len + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        for (i, r) in records.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.extend_from_slice(self.suffix);
        out
    }
}
