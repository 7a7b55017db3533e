//! Server-sent events body: one `data: ...\n\n` frame per event, optionally
//! paced, optionally cut short with a body error (connection reset).

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;

/// Message of the body error that truncates a stream.
pub const ABORT_MESSAGE: &str = "fake-provider: stream aborted by x-fake-abort-after-events";

/// An SSE response sending `events` (JSON texts or `[DONE]`), sleeping
/// `chunk_delay` between events. With `abort_after = Some(n)` only the first
/// `n` events are sent (never the last one, `[DONE]`) and the body then fails,
/// so the server resets the stream instead of finishing it.
pub fn response(
    events: Vec<String>,
    chunk_delay: Duration,
    abort_after: Option<usize>,
) -> Response {
    let send = match abort_after {
        Some(n) => n.min(events.len().saturating_sub(1)),
        None => events.len(),
    };
    let stream = async_stream::stream! {
        for (i, data) in events.into_iter().take(send).enumerate() {
            if i > 0 {
                pace(chunk_delay).await;
            }
            yield Ok::<Bytes, io::Error>(Bytes::from(format!("data: {data}\n\n")));
        }
        if abort_after.is_some() {
            pace(chunk_delay).await;
            yield Err(io::Error::other(ABORT_MESSAGE));
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// Waits between events. Even without a delay it yields once, so the server
/// flushes each event as its own write rather than batching them.
async fn pace(delay: Duration) {
    if delay.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(delay).await;
    }
}
