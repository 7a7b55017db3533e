//! Server-sent events body: one frame per event (`data: ...\n\n`, or with an `event:` line),
//! optionally paced, optionally cut short with a body error (connection reset), optionally
//! ended early by an in-band error event.

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;

/// Message of the body error that truncates a stream.
pub const ABORT_MESSAGE: &str = "fake-provider: stream aborted by x-fake-abort-after-events";

/// An SSE response sending `events` (JSON texts or `[DONE]`) as `data:` frames, sleeping
/// `chunk_delay` between events. With `abort_after = Some(n)` only the first
/// `n` events are sent (never the last one, `[DONE]`) and the body then fails,
/// so the server resets the stream instead of finishing it.
pub fn response(
    events: Vec<String>,
    chunk_delay: Duration,
    abort_after: Option<usize>,
) -> Response {
    let frames = events
        .into_iter()
        .map(|data| format!("data: {data}\n\n"))
        .collect();
    frames_response(frames, "text/event-stream", chunk_delay, abort_after, None)
}

/// A streamed response sending whole `frames` (SSE text, or any bytes: event-stream frames).
/// `error_after = Some((n, error))` sends only the
/// first `n` frames (never the last one) followed by the `error` frames, and ends the stream
/// cleanly, as a provider reporting an error in-band. `abort_after` then applies to that
/// sequence as in [`response`].
pub fn frames_response<F: Into<Bytes> + Send + 'static>(
    mut frames: Vec<F>,
    content_type: &'static str,
    chunk_delay: Duration,
    abort_after: Option<usize>,
    error_after: Option<(usize, Vec<F>)>,
) -> Response {
    if let Some((n, error)) = error_after {
        frames.truncate(n.min(frames.len().saturating_sub(1)));
        frames.extend(error);
    }
    let send = match abort_after {
        Some(n) => n.min(frames.len().saturating_sub(1)),
        None => frames.len(),
    };
    let stream = async_stream::stream! {
        for (i, frame) in frames.into_iter().take(send).enumerate() {
            if i > 0 {
                pace(chunk_delay).await;
            }
            yield Ok::<Bytes, io::Error>(frame.into());
        }
        if abort_after.is_some() {
            pace(chunk_delay).await;
            yield Err(io::Error::other(ABORT_MESSAGE));
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
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
