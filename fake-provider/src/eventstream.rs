//! AWS event-stream frames (`application/vnd.amazon.eventstream`), as Bedrock's ConverseStream
//! sends them: each frame a prelude (total and headers length, prelude CRC), the headers, the
//! JSON payload and the message CRC, written by AWS's own codec (`aws-smithy-eventstream`).
//!
//! An event has the headers `:event-type` (the ConverseStream member: `messageStart`,
//! `contentBlockDelta`, ...), `:content-type: application/json` and `:message-type: event`; an
//! exception `:exception-type` (`throttlingException`, ...), the content type and
//! `:message-type: exception`, with `{"message": ...}` as its payload.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use aws_smithy_types::str_bytes::StrBytes;
use bytes::Bytes;

/// `Content-Type` of a ConverseStream answer.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn header(name: &'static str, value: impl Into<String>) -> Header {
    Header::new(name, HeaderValue::String(StrBytes::from(value.into())))
}

fn frame(headers: Vec<Header>, payload: Vec<u8>) -> Result<Bytes, String> {
    let message = Message::new_from_parts(headers, payload);
    let mut out = Vec::new();
    write_message_to(&message, &mut out).map_err(|e| format!("event-stream frame: {e}"))?;
    Ok(Bytes::from(out))
}

/// One event frame: `:event-type` `event_type` with the JSON `payload`.
pub fn event(event_type: &str, payload: &serde_json::Value) -> Result<Bytes, String> {
    frame(
        vec![
            header(":event-type", event_type),
            header(":content-type", "application/json"),
            header(":message-type", "event"),
        ],
        payload.to_string().into_bytes(),
    )
}

/// One exception frame: `:exception-type` `exception_type` (the member name, lower camel case)
/// with `{"message": message}`.
pub fn exception(exception_type: &str, message: &str) -> Result<Bytes, String> {
    frame(
        vec![
            header(":exception-type", exception_type),
            header(":content-type", "application/json"),
            header(":message-type", "exception"),
        ],
        serde_json::json!({ "message": message })
            .to_string()
            .into_bytes(),
    )
}

#[cfg(test)]
pub mod decode {
    //! Test helper: the frames of a body, decoded (and their CRCs checked) by AWS's codec.
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
    use aws_smithy_types::event_stream::HeaderValue;

    /// One decoded frame: its string headers and its payload as JSON.
    #[derive(Debug)]
    pub struct Frame {
        pub headers: Vec<(String, String)>,
        pub payload: serde_json::Value,
    }

    impl Frame {
        pub fn header(&self, name: &str) -> &str {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
        }
    }

    /// Every frame of `body`, which must end on a frame boundary.
    pub fn frames(body: &[u8]) -> Vec<Frame> {
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = body;
        let mut out = Vec::new();
        while !buf.is_empty() {
            match decoder.decode_frame(&mut buf).expect("valid frame") {
                DecodedFrame::Complete(m) => out.push(Frame {
                    headers: m
                        .headers()
                        .iter()
                        .map(|h| {
                            let value = match h.value() {
                                HeaderValue::String(s) => s.as_str().to_owned(),
                                other => panic!("non-string header {other:?}"),
                            };
                            (h.name().as_str().to_owned(), value)
                        })
                        .collect(),
                    payload: serde_json::from_slice(m.payload()).expect("JSON payload"),
                }),
                DecodedFrame::Incomplete => panic!("body ends inside a frame"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_aws_codec() {
        let mut body = event("messageStart", &serde_json::json!({"role": "assistant"}))
            .unwrap()
            .to_vec();
        body.extend_from_slice(&exception("throttlingException", "Too many requests").unwrap());
        let frames = decode::frames(&body);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header(":event-type"), "messageStart");
        assert_eq!(frames[0].header(":message-type"), "event");
        assert_eq!(frames[0].header(":content-type"), "application/json");
        assert_eq!(frames[0].payload, serde_json::json!({"role": "assistant"}));
        assert_eq!(frames[1].header(":exception-type"), "throttlingException");
        assert_eq!(frames[1].header(":message-type"), "exception");
        assert_eq!(frames[1].payload["message"], "Too many requests");
        // The prelude's total length is the frame's length.
        let first = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        assert_eq!(decode::frames(&body[..first]).len(), 1);
    }
}
