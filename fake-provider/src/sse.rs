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

/// How a stream is paced: `first` before its first event (after the headers went out, as a
/// provider that stalls), `between` between events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pace {
    pub first: Duration,
    pub between: Duration,
}

/// An SSE response sending `events` (JSON texts or `[DONE]`) as `data:` frames, paced by
/// `pace`. With `abort_after = Some(n)` only the first
/// `n` events are sent (never the last one, `[DONE]`) and the body then fails,
/// so the server resets the stream instead of finishing it.
pub fn response(events: Vec<String>, pace: Pace, abort_after: Option<usize>) -> Response {
    let frames = events
        .into_iter()
        .map(|data| format!("data: {data}\n\n"))
        .collect();
    frames_response(frames, "text/event-stream", pace, abort_after, None)
}

/// A streamed response sending whole `frames` (SSE text, or any bytes: event-stream frames).
/// `error_after = Some((n, error))` sends only the
/// first `n` frames (never the last one) followed by the `error` frames, and ends the stream
/// cleanly, as a provider reporting an error in-band. `abort_after` then applies to that
/// sequence as in [`response`].
pub fn frames_response<F: Into<Bytes> + Send + 'static>(
    mut frames: Vec<F>,
    content_type: &'static str,
    pace: Pace,
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
        if !pace.first.is_zero() {
            tokio::time::sleep(pace.first).await;
        }
        for (i, frame) in frames.into_iter().take(send).enumerate() {
            if i > 0 {
                wait(pace.between).await;
            }
            yield Ok::<Bytes, io::Error>(frame.into());
        }
        if abort_after.is_some() {
            wait(pace.between).await;
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
async fn wait(delay: Duration) {
    if delay.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(delay).await;
    }
}
