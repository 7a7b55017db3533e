//! Fuzz targets for providers' answers from the wire: the SSE parser, the usage meter and
//! the cache's completion assembler and replay.

use super::{chunks, encoding, Input};

type Seen = (usize, Vec<u8>, Vec<u8>, bool);

fn sse_events(chunks: &[&[u8]], max: usize) -> Vec<Seen> {
    let mut p = crate::sse::Parser::new(max);
    let mut seen = Vec::new();
    for c in chunks {
        p.feed(c, |end, e| {
            assert!(end <= c.len(), "an event ends past its chunk");
            seen.push((end, e.data.to_vec(), e.name.to_vec(), e.truncated));
        });
        assert!(
            p.buffered() <= 2 * max.max(16) + 256,
            "the parser holds {} bytes, more than its bound {max}",
            p.buffered()
        );
    }
    seen
}

/// The SSE parser: any split of a stream into chunks gives the same events as the whole
/// stream in one chunk, and what it holds stays bounded.
pub fn sse(data: &[u8]) {
    let mut input = Input::new(data);
    let seed = u64::from(input.u16());
    let max = usize::from(input.byte());
    let body = input.rest();
    let whole: Vec<(Vec<u8>, Vec<u8>, bool)> = sse_events(&[body], max)
        .into_iter()
        .map(|(_, d, n, t)| (d, n, t))
        .collect();
    let split: Vec<(Vec<u8>, Vec<u8>, bool)> = sse_events(&chunks(body, seed, 64), max)
        .into_iter()
        .map(|(_, d, n, t)| (d, n, t))
        .collect();
    assert_eq!(whole, split, "the split stream gave other events");
}

/// The usage meter (usage, estimates, usage-chunk stripping) on a body cut into chunks.
/// Without stripping every chunk passes unchanged. The same body read as a Responses answer:
/// every chunk passes unchanged, and the chunks teach what the whole body does.
pub fn meter(data: &[u8]) {
    use crate::meter::{ChunkAction, Meter};
    use crate::request::Endpoint;
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let body = input.rest();
    let content_type = match flags % 4 {
        0 => "text/event-stream",
        1 => "application/json",
        2 => "application/problem+json; charset=utf-8",
        _ => "text/plain",
    };
    let content_encoding = (flags & 0x80 != 0).then_some("gzip");
    let strip = flags & 4 != 0;
    let cap = if flags & 8 != 0 { 64 } else { 1 << 20 };
    let mut meter = Meter::new(
        Endpoint::ChatCompletions,
        content_type,
        content_encoding,
        strip,
        encoding(flags >> 4),
        cap,
    );
    let _ = meter.wants_body();
    let pieces = chunks(body, seed, 256);
    let last = pieces.len().saturating_sub(1);
    for (i, c) in pieces.iter().enumerate() {
        let action = meter.on_chunk(c, i == last, i as u64);
        if !strip {
            assert_eq!(
                action,
                ChunkAction::Pass,
                "a chunk changed without stripping"
            );
        }
    }
    let _ = meter.finish();
    let responses = || {
        Meter::new(
            Endpoint::Responses,
            content_type,
            content_encoding,
            strip,
            encoding(flags >> 4),
            cap,
        )
    };
    let mut split = responses();
    for (i, c) in pieces.iter().enumerate() {
        let action = split.on_chunk(c, i == last, i as u64);
        assert_eq!(action, ChunkAction::Pass, "a Responses answer was changed");
    }
    let mut whole = responses();
    let _ = whole.on_chunk(body, true, 0);
    let (mut split, mut whole) = (split.finish(), whole.finish());
    // The time of the first token is the chunk's it came in.
    split.first_token_ms = split.first_token_ms.map(|_| 0);
    whole.first_token_ms = whole.first_token_ms.map(|_| 0);
    assert_eq!(split, whole, "a Responses answer read in chunks differs");
}

/// The cache's stream assembler on a stream cut into chunks, the replay of what it assembled,
/// and the replay and summary of a stored completion.
pub fn completion(data: &[u8]) {
    use crate::completion::{self, Assembler};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let max = usize::from(input.u16());
    let body = input.rest();
    let mut a = Assembler::new(max);
    for c in chunks(body, seed, 256) {
        a.feed(c);
        if a.gave_up() {
            break;
        }
    }
    if let Some(assembled) = a.finish() {
        assert!(
            completion::summary(&assembled).is_some(),
            "an assembled completion does not read back: {}",
            String::from_utf8_lossy(&assembled)
        );
        let _ = completion::to_sse(&assembled, flags & 1 != 0);
    }
    let complete = completion::summary(body).is_some_and(|s| s.complete);
    if let Some(sse) = completion::to_sse(body, flags & 2 != 0).filter(|_| complete) {
        // The replay of a complete answer is a stream the assembler reads back whole.
        let mut again = Assembler::new(usize::MAX / 2);
        again.feed(&sse);
        assert!(
            again.finish().is_some(),
            "a replayed completion does not assemble: {}",
            String::from_utf8_lossy(&sse)
        );
    }
}
