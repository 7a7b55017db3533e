//! An incremental decoder for the AWS event-stream framing (`application/vnd.amazon.eventstream`),
//! the binary framing Bedrock's ConverseStream answers with.
//!
//! Each frame is a prelude (total length, headers length, prelude CRC32), headers (`:message-type`,
//! `:event-type` or `:exception-type`, `:content-type`), a payload and a CRC32 of the whole
//! frame. The frames are read by the maintained `aws-smithy-eventstream` crate: its
//! [`MessageFrameDecoder`] checks the lengths and both CRCs, and its `parse_response_headers`
//! reads the message type and the event or exception type. What this module adds is the buffer
//! the chunks of a response body are fed into, and the bound: a frame whose prelude states more
//! than `max_frame_bytes` is refused before any of it is held, so the decoder never holds more
//! than one frame and one chunk, whatever the stream's length. The first frame that cannot be
//! read ends the stream: an [`Error`], returned again for anything fed after it.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_eventstream::smithy::parse_response_headers;

/// Bytes of a frame's prelude: total length, headers length, prelude CRC.
const PRELUDE_BYTES: usize = 12;

/// One whole message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `:message-type`: `event`, or `exception` for an error the provider reports in the stream.
    pub message_type: String,
    /// `:event-type` of an event (`contentBlockDelta`...), `:exception-type` of an exception
    /// (`throttlingException`...).
    pub event_type: String,
    /// The message's payload (for Bedrock, a JSON object).
    pub payload: Vec<u8>,
}

impl Message {
    /// Whether the message is an exception the provider reports in its stream.
    pub fn is_exception(&self) -> bool {
        self.message_type == "exception"
    }
}

/// Why the stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A frame's prelude states more bytes than the decoder holds.
    TooLarge { frame_bytes: usize, max: usize },
    /// A frame is not a valid event-stream frame (lengths, CRCs, headers), as the library says.
    Corrupt(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLarge { frame_bytes, max } => write!(
                f,
                "an event-stream frame of {frame_bytes} bytes is larger than the {max} bytes the gateway holds"
            ),
            Error::Corrupt(why) => write!(f, "an event-stream frame is invalid: {why}"),
        }
    }
}

/// The decoder of one stream.
#[derive(Debug)]
pub struct Decoder {
    frames: MessageFrameDecoder,
    /// What arrived and is not yet part of a decoded frame (after the prelude the frame
    /// decoder holds, if any).
    buf: Vec<u8>,
    /// The total length of the frame whose prelude the frame decoder has taken.
    pending: Option<usize>,
    max: usize,
    failed: Option<Error>,
}

impl Decoder {
    /// A decoder that refuses frames larger than `max_frame_bytes` (at least a prelude and a CRC).
    pub fn new(max_frame_bytes: usize) -> Decoder {
        Decoder {
            frames: MessageFrameDecoder::new(),
            buf: Vec::new(),
            pending: None,
            max: max_frame_bytes.max(PRELUDE_BYTES + 4),
            failed: None,
        }
    }

    /// Bytes held for the frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending.map_or(0, |_| PRELUDE_BYTES)
    }

    /// Feed the next chunk; `on_message` is called for every message it completes, in order.
    /// An error ends the stream: the messages before the bad frame were delivered, nothing
    /// after it is, and every later call returns the same error.
    pub fn feed(&mut self, chunk: &[u8], mut on_message: impl FnMut(Message)) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        let mut rest: &[u8] = &self.buf;
        let result = loop {
            if self.pending.is_none() {
                // The frame decoder takes a prelude as soon as one is there: check its length
                // first, so a frame past the bound is never held.
                let Some(len) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
                    break Ok(());
                };
                let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
                if len > self.max {
                    break Err(Error::TooLarge {
                        frame_bytes: len,
                        max: self.max,
                    });
                }
                if rest.len() < PRELUDE_BYTES {
                    break Ok(());
                }
                self.pending = Some(len);
            }
            match self.frames.decode_frame(&mut rest) {
                Ok(DecodedFrame::Complete(frame)) => {
                    self.pending = None;
                    match message(&frame) {
                        Ok(m) => on_message(m),
                        Err(e) => break Err(e),
                    }
                }
                Ok(DecodedFrame::Incomplete) => break Ok(()),
                Err(e) => break Err(Error::Corrupt(e.to_string())),
            }
        };
        let consumed = self.buf.len() - rest.len();
        self.buf.drain(..consumed);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
            self.pending = None;
        }
        result
    }
}

/// A decoded frame as a [`Message`]: its headers as the library reads them.
fn message(frame: &aws_smithy_types::event_stream::Message) -> Result<Message, Error> {
    let headers = parse_response_headers(frame).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(Message {
        message_type: headers.message_type.as_str().to_string(),
        event_type: headers.smithy_type.as_str().to_string(),
        payload: frame.payload().to_vec(),
    })
}

#[cfg(test)]
mod tests;
