//! An incremental Server-Sent Events parser with bounded memory.
//!
//! It follows the WHATWG event-stream rules (lines end in CRLF, LF or CR; `data` lines join with
//! `\n`; a blank line dispatches; `:` starts a comment; one leading space after the colon is
//! dropped; a leading BOM is ignored) and survives any split of the stream into chunks, including
//! a CRLF cut in two. For each dispatched event it reports where in the current chunk the event
//! ends, so the caller can cut an event out of the stream without buffering the rest.
//! No line or event may grow past `max_event_bytes`: what goes past is dropped and the event is
//! flagged `truncated`. Existing SSE crates are async stream adaptors without byte positions,
//! which is why this small state machine is ours.

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event's data, `data` lines joined with `\n`.
    pub data: &'a [u8],
    /// The `event` field, empty when absent.
    pub name: &'a [u8],
    /// Some of the event's data was dropped because it was larger than the bound.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct Parser {
    line: Vec<u8>,
    data: Vec<u8>,
    name: Vec<u8>,
    has_data: bool,
    truncated: bool,
    after_cr: bool,
    at_start: bool,
    max: usize,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Parser {
    pub fn new(max_event_bytes: usize) -> Parser {
        Parser {
            line: Vec::new(),
            data: Vec::new(),
            name: Vec::new(),
            has_data: false,
            truncated: false,
            after_cr: false,
            at_start: true,
            max: max_event_bytes.max(16),
        }
    }

    /// Bytes held for the unfinished line and event.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.name.len()
    }

    /// Feed the next chunk. `on_event(end, event)` is called for every event completed in this
    /// chunk, with `end` the offset just past the byte that completed it.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(usize, Event<'_>)) {
        let rest = if self.at_start {
            self.skip_bom(chunk)
        } else {
            chunk
        };
        let offset = chunk.len() - rest.len();
        for (i, &b) in rest.iter().enumerate() {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.end_line() {
                        on_event(
                            offset + i + 1,
                            Event {
                                data: self.data.strip_suffix(b"\n").unwrap_or(&self.data),
                                name: &self.name,
                                truncated: self.truncated,
                            },
                        );
                    }
                    if self.line.is_empty() {
                        // A blank line ended the event (dispatched or not): reset it.
                        self.data.clear();
                        self.name.clear();
                        self.has_data = false;
                        self.truncated = false;
                    }
                    self.line.clear();
                }
                _ => {
                    if self.line.len() < self.max {
                        self.line.push(b);
                    } else {
                        self.truncated = true;
                    }
                }
            }
        }
    }

    /// At the start of the stream: skip a leading BOM, which may itself be split across chunks
    /// (its first bytes are held in `line` until the rest arrives). Returns what follows it.
    fn skip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let want = BOM.len().saturating_sub(self.line.len());
        let (head, rest) = chunk.split_at(want.min(chunk.len()));
        let held = self.line.len();
        self.line.extend_from_slice(head);
        if BOM.starts_with(&self.line) {
            if self.line.len() == BOM.len() {
                self.line.clear();
                self.at_start = false;
            }
            return rest;
        }
        // Not a BOM: what was held is ordinary line content, and the chunk is read as it is.
        self.line.truncate(held);
        self.at_start = false;
        chunk
    }

    /// Process the line in `self.line`; true when it was blank and an event is ready.
    fn end_line(&mut self) -> bool {
        if self.line.is_empty() {
            return self.has_data;
        }
        if self.line.first() == Some(&b':') {
            return false;
        }
        let (field, value) = match self.line.iter().position(|&c| c == b':') {
            Some(p) => {
                let (field, colon_value) = self.line.split_at(p);
                let v = colon_value.get(1..).unwrap_or_default();
                (field, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (self.line.as_slice(), &[][..]),
        };
        match field {
            b"data" => {
                self.has_data = true;
                if self.data.len() + value.len() < self.max {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                } else {
                    self.truncated = true;
                }
            }
            b"event" => {
                self.name.clear();
                self.name
                    .extend_from_slice(value.get(..256).unwrap_or(value));
            }
            _ => {}
        }
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String, bool)> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |_, e| {
                out.push((
                    String::from_utf8_lossy(e.name).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                    e.truncated,
                ))
            });
        }
        out
    }

    fn ev(name: &str, data: &str) -> (String, String, bool) {
        (name.into(), data.into(), false)
    }

    #[test]
    fn spec_examples() {
        let s = b"data: YHOO\ndata: +2\ndata: 10\n\n: comment\n\nevent: add\ndata:73857293\n\r\ndata\n\ndata:  two spaces\r\rid: 1\nretry: 5\n\n";
        assert_eq!(
            events(&[s]),
            vec![
                ev("", "YHOO\n+2\n10"),
                ev("add", "73857293"),
                ev("", ""),
                ev("", " two spaces")
            ]
        );
        // No blank line at the end: nothing dispatched.
        assert_eq!(events(&[b"data: x\n"]), vec![]);
        // BOM at the start is ignored, anywhere else it is content.
        assert_eq!(
            events(&["\u{feff}data: a\n\n".as_bytes()]),
            vec![ev("", "a")]
        );
        assert_eq!(
            events(&[&BOM[..1], &BOM[1..], b"data: a\n\n"]),
            vec![ev("", "a")]
        );
    }

    #[test]
    fn end_offsets_cover_the_event() {
        let s = b"data: a\r\n\r\ndata: b\n\n";
        let mut p = Parser::new(1024);
        let mut ends = Vec::new();
        p.feed(s, |end, _| ends.push(end));
        assert_eq!(ends, vec![10, 20]);
    }

    #[test]
    fn bounded() {
        let mut p = Parser::new(64);
        let big = vec![b'x'; 10_000];
        let mut got = Vec::new();
        p.feed(b"data: ", |_, _| {});
        p.feed(&big, |_, _| {});
        assert!(p.buffered() <= 64);
        p.feed(b"\n\ndata: ok\n\n", |_, e| {
            got.push((e.truncated, e.data.to_vec()))
        });
        assert_eq!(got.len(), 2);
        assert!(got[0].0);
        assert_eq!(got[1], (false, b"ok".to_vec()));
    }

    /// A chat stream in OpenAI's exact wire format (with include_usage), as the API sends it.
    pub(crate) const RECORDED: &str = concat!(
        "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"! How can I assist you today?\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_fc9f1d7035\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":9,\"total_tokens\":28,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn split_at_all(s: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (s.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut prev = 0;
        for c in cuts {
            out.push(s[prev..c].to_vec());
            prev = c;
        }
        out.push(s[prev..].to_vec());
        out
    }

    #[test]
    fn every_single_split_of_the_recording() {
        let s = RECORDED.as_bytes();
        let whole = events(&[s]);
        assert_eq!(whole.len(), 6);
        for cut in 0..=s.len() {
            assert_eq!(events(&[&s[..cut], &s[cut..]]), whole, "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..5000, 0..40),
                                            crlf in any::<bool>()) {
            let text = if crlf { RECORDED.replace('\n', "\r\n") } else { RECORDED.to_string() };
            let s = text.as_bytes();
            let whole = events(&[s]);
            let parts = split_at_all(s, &cuts);
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            prop_assert_eq!(events(&refs), whole);
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut p = Parser::new(32);
            for c in &chunks {
                p.feed(c, |end, _| assert!(end <= c.len()));
                prop_assert!(p.buffered() <= 32 * 2 + 256);
            }
        }
    }
}
