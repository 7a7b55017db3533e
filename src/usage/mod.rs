//! Usage events: one per finished request, batched in the VM (the shared [`crate::export`]
//! queue) and posted to a collector as OTLP/HTTP JSON logs (`ExportLogsServiceRequest`) or as a
//! plain JSON array.

mod event;

pub use crate::export::{
    Batch, Done, Export, Exporter, Format, RawExport, Sink, DEFAULT_BATCH_SIZE,
    DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_BUFFERED_EVENTS, DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_MS, MAX_BACKOFF_MS, MAX_BATCH_SIZE, MAX_BUFFERED_EVENTS, MAX_FLUSH_INTERVAL_MS,
    MAX_IN_FLIGHT, MAX_RETRIES,
};
pub use crate::otlp::Val;
pub use event::{Event, EVENT_NAME};

/// The usage events' exporter; `instance`: this Envoy's node id, when it has one.
pub fn exporter(cfg: Export, instance: Option<String>) -> Exporter {
    let frame = event::frame(cfg.format, &cfg.service_name, instance);
    Exporter::new(cfg, Sink::Usage, frame)
}

/// Queue `e` in `x`; `false` when the buffer is full.
pub fn push(x: &mut Exporter, e: &Event, now_ms: u64) -> bool {
    let record = e.encode(x.cfg.format);
    x.push(record, now_ms)
}

/// Events encoded for one post (what `push` and `take_due` do in two steps).
pub fn encode(x: &Exporter, events: &[Event]) -> Vec<u8> {
    let records: Vec<Vec<u8>> = events.iter().map(|e| e.encode(x.cfg.format)).collect();
    x.body(records.iter().map(Vec::as_slice))
}

#[cfg(test)]
mod tests;
