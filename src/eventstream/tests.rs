//! The decoder against frames the library's own encoder writes: every split of the stream gives
//! the same messages, a bad or oversized frame is an error, and arbitrary bytes never panic.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame};
use proptest::prelude::*;

use super::*;

/// One frame as Bedrock writes it: `:message-type`, the event or exception type, JSON content.
fn frame(message_type: &str, event_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_header = if message_type == "exception" {
        ":exception-type"
    } else {
        ":event-type"
    };
    let f = Frame::new(payload.to_vec())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_string().into()),
        ))
        .add_header(Header::new(
            type_header,
            HeaderValue::String(event_type.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&f, &mut out).unwrap();
    out
}

fn msg(message_type: &str, event_type: &str, payload: &[u8]) -> Message {
    Message {
        message_type: message_type.into(),
        event_type: event_type.into(),
        payload: payload.to_vec(),
    }
}

/// The messages of a stream fed in these pieces, and how feeding ended.
fn decode(pieces: &[&[u8]], max: usize) -> (Vec<Message>, Result<(), Error>) {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    for p in pieces {
        if let Err(e) = d.feed(p, |m| out.push(m)) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

fn sample() -> (Vec<u8>, Vec<Message>) {
    let events = [
        msg(
            "event",
            "messageStart",
            br#"{"p":"abcd","role":"assistant"}"#,
        ),
        msg(
            "event",
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"abcdefgh"}"#,
        ),
        msg("event", "messageStop", br#"{"stopReason":"end_turn"}"#),
        msg("exception", "throttlingException", br#"{"message":"slow"}"#),
    ];
    let bytes = events
        .iter()
        .flat_map(|m| frame(&m.message_type, &m.event_type, &m.payload))
        .collect();
    (bytes, events.to_vec())
}

#[test]
fn whole_stream_decodes_in_order() {
    let (bytes, want) = sample();
    let (got, end) = decode(&[&bytes], 1 << 16);
    assert_eq!(end, Ok(()));
    assert_eq!(got, want);
    assert!(got[3].is_exception() && !got[0].is_exception());
}

#[test]
fn every_split_point_and_single_bytes_decode_the_same() {
    let (bytes, want) = sample();
    for cut in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(cut);
        let (got, end) = decode(&[head, tail], 1 << 16);
        assert_eq!(end, Ok(()), "cut at {cut}");
        assert_eq!(got, want, "cut at {cut}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode(&singles, 1 << 16), (want, Ok(())));
}

#[test]
fn a_frame_past_the_bound_is_refused_before_it_is_held() {
    let big = frame("event", "contentBlockDelta", &[b'x'; 5000]);
    let mut d = Decoder::new(1024);
    // Only the prelude has arrived: the frame is refused already.
    let e = d.feed(&big[..12], |_| panic!("no message")).unwrap_err();
    assert_eq!(
        e,
        Error::TooLarge {
            frame_bytes: big.len(),
            max: 1024
        }
    );
    assert_eq!(d.buffered(), 0);
    assert!(e.to_string().contains("larger than"));
    // And stays refused.
    assert_eq!(d.feed(&big[12..], |_| panic!("no message")), Err(e));
    // A frame within the bound passes.
    let small = frame("event", "messageStop", br#"{"stopReason":"end_turn"}"#);
    assert_eq!(decode(&[&small], small.len()).0.len(), 1);
}

#[test]
fn a_bad_crc_ends_the_stream_after_the_good_frames() {
    let good = frame("event", "messageStart", br#"{"role":"assistant"}"#);
    let mut bad = frame("event", "contentBlockDelta", br#"{"delta":{"text":"x"}}"#);
    *bad.last_mut().unwrap() ^= 0xff;
    let after = frame("event", "messageStop", br#"{"stopReason":"end_turn"}"#);
    let stream = [good.clone(), bad, after].concat();
    let (got, end) = decode(&[&stream], 1 << 16);
    assert_eq!(got.len(), 1, "only the frame before the bad one");
    assert!(
        matches!(&end, Err(Error::Corrupt(why)) if why.contains("checksum")),
        "{end:?}"
    );
    // A corrupt prelude CRC too.
    let mut prelude = good.clone();
    prelude[9] ^= 1;
    assert!(matches!(
        decode(&[&prelude], 1 << 16).1,
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn a_frame_without_a_message_type_is_an_error() {
    let f = Frame::new(&b"{}"[..]).add_header(Header::new(
        ":event-type",
        HeaderValue::String("messageStart".into()),
    ));
    let mut bytes = Vec::new();
    write_message_to(&f, &mut bytes).unwrap();
    let (got, end) = decode(&[&bytes], 1 << 16);
    assert!(got.is_empty());
    assert!(matches!(end, Err(Error::Corrupt(why)) if why.contains(":message-type")));
    // A length too small to be a frame.
    let tiny = [0u8, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(decode(&[&tiny], 1 << 16).1.is_err());
}

fn any_message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![Just("event"), Just("exception")],
        "[a-zA-Z]{1,24}",
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(t, e, p)| msg(t, &e, &p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any messages, encoded by the library and cut anywhere, decode to themselves.
    #[test]
    fn random_splits_decode_the_same(
        messages in proptest::collection::vec(any_message(), 0..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let bytes: Vec<u8> = messages
            .iter()
            .flat_map(|m| frame(&m.message_type, &m.event_type, &m.payload))
            .collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for a in at {
            pieces.push(&bytes[from..a]);
            from = a;
        }
        pieces.push(&bytes[from..]);
        prop_assert_eq!(decode(&pieces, 1 << 16), (messages, Ok(())));
    }

    /// Arbitrary bytes in arbitrary chunks, alone or after valid frames, never panic, and the
    /// decoder never holds more than the bound.
    #[test]
    fn random_bytes_never_panic(
        junk in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..300,
        prefix in any::<bool>(),
    ) {
        let mut bytes = if prefix { sample().0 } else { Vec::new() };
        bytes.extend_from_slice(&junk);
        let mut d = Decoder::new(512);
        for c in bytes.chunks(chunk) {
            let _ = d.feed(c, |_| {});
            prop_assert!(d.buffered() <= 512);
        }
    }
}
