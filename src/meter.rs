//! The usage meter: [`Meter`] reads usage, the time to first token and the answer's end from
//! a provider's response as it passes, without holding it back.
//!
//! A JSON response is copied (up to a bound) while each chunk goes on to the client, and its
//! `usage` is read at the end. An SSE stream is parsed incrementally: the final usage chunk gives
//! the exact figures, the first content delta marks the time to first token, and when a provider
//! sends no usage the completion is counted from the deltas (flagged as estimated). When the
//! filter itself added `stream_options.include_usage`, the usage-only chunk the client did not ask
//! for is cut out; to do that, the bytes of an event still arriving are held until the event is
//! complete (a client cannot act on half an event anyway), and everything else flows on at once.
//!
//! The Responses API's answers have their own shapes, read by [`responses`]: the meter is told
//! which endpoint's answer it reads. Nothing is ever cut from those.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::request::Endpoint;
use crate::sse;
use crate::tokens::{Count, Encoding};
use crate::wire::ToolCall;

mod responses;

/// Largest SSE event (or line) the parser keeps; bigger ones pass through unparsed.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// OpenAI's `usage` object (chat, completions and embeddings; the Responses API's is read into
/// it: `input_tokens` as `prompt_tokens`, `output_tokens` as `completion_tokens`, their details
/// as these details).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    pub completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    pub total_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct PromptDetails {
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    pub cached_tokens: Option<u64>,
    /// Tokens written to the provider's prompt cache (Anthropic's `cache_creation_input_tokens`,
    /// carried by the translation).
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    pub cache_creation_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct CompletionDetails {
    #[serde(default, deserialize_with = "crate::wire::de_count")]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn cached(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }
    pub fn cache_write(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cache_creation_tokens)
            .unwrap_or(0)
    }
    pub fn reasoning(&self) -> u64 {
        self.completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<Piece<'a>>,
    #[serde(default, borrow)]
    delta: Option<Piece<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// Finish reasons a response lists at most (one per choice).
pub const MAX_FINISH_REASONS: usize = 16;

/// A finish reason from the wire, as one of the names OpenAI's API uses (`other` for any
/// other string), so what is recorded is bounded.
fn finish_reason(s: &str) -> &'static str {
    match s {
        "stop" => "stop",
        "length" => "length",
        "tool_calls" => "tool_calls",
        "content_filter" => "content_filter",
        "function_call" => "function_call",
        _ => "other",
    }
}

/// Record the finish reasons of `choices`.
fn learn_finish(learned: &mut Learned, choices: &[Choice<'_>]) {
    for c in choices {
        if let Some(r) = c.finish_reason.as_deref() {
            if learned.finish_reasons.len() < MAX_FINISH_REASONS {
                learned.finish_reasons.push(finish_reason(r));
            }
        }
    }
}

/// The generated parts of a message or a delta.
#[derive(Deserialize)]
struct Piece<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

impl Choice<'_> {
    /// Generated text in this choice, fed to `f` piece by piece. Returns whether there was any.
    fn generated(&self, f: &mut dyn FnMut(&str)) -> bool {
        let mut any = false;
        let mut emit = |s: &str| {
            if !s.is_empty() {
                any = true;
                f(s);
            }
        };
        if let Some(t) = &self.text {
            emit(t);
        }
        for p in [&self.message, &self.delta].into_iter().flatten() {
            for s in [&p.content, &p.refusal, &p.reasoning_content]
                .into_iter()
                .flatten()
            {
                emit(s);
            }
            for call in p.tool_calls.iter().flatten() {
                for s in call.function.iter().flat_map(|f| f.texts()) {
                    emit(s);
                }
            }
        }
        any
    }
}

/// What the shell does with a response chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkAction {
    /// Let the chunk through as it is.
    Pass,
    /// Replace the chunk with these bytes (possibly none).
    Replace(Vec<u8>),
}

/// Everything learned from a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    pub usage: Option<Usage>,
    /// Completion tokens counted from the generated text (used when `usage` is absent).
    pub completion_estimate: Count,
    /// Time (ms, host clock) of the first generated token in a stream.
    pub first_token_ms: Option<u64>,
    pub model: Option<String>,
    /// The response's `id` (`chatcmpl-...`, `msg_...`, `resp_...`), at most `MAX_ID_BYTES`.
    pub id: Option<String>,
    /// The answer reached its end: a stream ended with `[DONE]`, or a JSON body was complete and
    /// parsed. For the Responses API: a stream's terminal event arrived (`response.completed`,
    /// `response.incomplete`, `response.failed`, or an `error` event), a JSON body's `status`
    /// is `completed` or `incomplete`.
    pub complete: bool,
    /// The provider reported an error inside a 200 stream (for the Responses API,
    /// `response.failed` or `error`).
    pub stream_error: bool,
    /// Why each choice ended (`stop`, `length`, ...; see `finish_reason`), in the order they
    /// came, at most `MAX_FINISH_REASONS`.
    pub finish_reasons: Vec<&'static str>,
    /// The generated text, at most `output_max` bytes, when asked for (`Meter::capture_output`:
    /// a traced route that shows content).
    pub output: Option<String>,
    pub output_max: usize,
}

/// Keep `s` in the captured output, within its bound.
fn capture(output: &mut Option<String>, max: usize, s: &str) {
    if let Some(o) = output.as_mut() {
        let room = max.saturating_sub(o.len());
        o.push_str(crate::trace::span::cut_to(s, room));
    }
}

enum Mode {
    Json {
        buf: Vec<u8>,
        cap: usize,
        overflow: bool,
        /// The body was read to its end.
        done: bool,
    },
    Sse(Box<SseState>),
    Ignore,
}

struct SseState {
    parser: sse::Parser,
    /// A Responses API stream.
    responses: bool,
    strip_usage: bool,
    /// Bytes of the unfinished event from earlier chunks (only while stripping).
    held: Vec<u8>,
}

impl SseState {
    /// One chunk of the stream: every event completed in it is learned from; while stripping,
    /// the chunk is rebuilt without the usage-only events and with the bytes of an unfinished
    /// event held back.
    fn on_chunk(
        &mut self,
        learned: &mut Learned,
        chunk: &[u8],
        end: bool,
        now_ms: u64,
        encoding: Option<Encoding>,
    ) -> ChunkAction {
        let SseState {
            parser,
            responses,
            strip_usage,
            held,
        } = self;
        let mut out: Option<Vec<u8>> = strip_usage.then(Vec::new);
        let mut start = 0;
        parser.feed(chunk, |event_end, ev| {
            let drop = if *responses {
                responses::learn_event(learned, ev, encoding, now_ms);
                false
            } else {
                learn_event(learned, ev, encoding, now_ms) && *strip_usage
            };
            if let Some(out) = out.as_mut() {
                if !drop {
                    out.extend_from_slice(held);
                    out.extend_from_slice(chunk.get(start..event_end).unwrap_or_default());
                }
                held.clear();
            }
            start = event_end;
        });
        let Some(mut out) = out else {
            return ChunkAction::Pass;
        };
        held.extend_from_slice(chunk.get(start..).unwrap_or_default());
        if end || held.len() > MAX_EVENT_BYTES {
            // Stream over, or an event too big to hold: let it go as it is.
            out.append(held);
            if !end {
                *strip_usage = false;
            }
        }
        if out.as_slice() == chunk {
            ChunkAction::Pass
        } else {
            ChunkAction::Replace(out)
        }
    }
}

/// Follows one response as it passes to the client; [`Meter::finish`] gives what it learned.
pub struct Meter {
    mode: Mode,
    /// A Responses API answer.
    responses: bool,
    encoding: Option<Encoding>,
    learned: Learned,
}

impl Meter {
    /// `endpoint` whose answer this is (the Responses API's shapes, or the others'),
    /// `content_type` and `content_encoding` of the response; `strip_usage` when the filter
    /// added `include_usage` (never honoured for a Responses answer: nothing is cut from it). A
    /// compressed body cannot be read as it passes: it is left alone (the filter asks providers
    /// for identity encoding, so this is the rare case).
    pub fn new(
        endpoint: Endpoint,
        content_type: &str,
        content_encoding: Option<&str>,
        strip_usage: bool,
        encoding: Option<Encoding>,
        json_cap: usize,
    ) -> Meter {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let encoded = content_encoding
            .map(str::trim)
            .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        let responses = endpoint == Endpoint::Responses;
        let mode = if encoded {
            Mode::Ignore
        } else if ct == "text/event-stream" {
            Mode::Sse(Box::new(SseState {
                parser: sse::Parser::new(MAX_EVENT_BYTES),
                responses,
                strip_usage: strip_usage && !responses,
                held: Vec::new(),
            }))
        } else if ct == "application/json" || ct.ends_with("+json") {
            Mode::Json {
                buf: Vec::new(),
                cap: json_cap,
                overflow: false,
                done: false,
            }
        } else {
            Mode::Ignore
        };
        Meter {
            mode,
            responses,
            encoding,
            learned: Learned::default(),
        }
    }

    /// Whether the shell must read each chunk's bytes.
    pub fn wants_body(&self) -> bool {
        !matches!(self.mode, Mode::Ignore)
    }

    /// One response chunk; `end` on the last; `now_ms` the host clock.
    pub fn on_chunk(&mut self, chunk: &[u8], end: bool, now_ms: u64) -> ChunkAction {
        let encoding = self.encoding;
        let responses = self.responses;
        let learned = &mut self.learned;
        match &mut self.mode {
            Mode::Ignore => ChunkAction::Pass,
            Mode::Json {
                buf,
                cap,
                overflow,
                done,
            } => {
                if !*overflow {
                    if buf.len() + chunk.len() <= *cap {
                        buf.extend_from_slice(chunk);
                    } else {
                        *overflow = true;
                        *buf = Vec::new();
                    }
                }
                if end && !*overflow {
                    learn_body(responses, learned, buf, encoding);
                    *done = true;
                }
                ChunkAction::Pass
            }
            Mode::Sse(state) => state.on_chunk(learned, chunk, end, now_ms, encoding),
        }
    }

    /// Keep the generated text, at most `max` bytes of it (`Learned::output`).
    pub fn capture_output(&mut self, max: usize) {
        self.learned.output = Some(String::new());
        self.learned.output_max = max;
    }

    /// What was learned. A JSON body whose end was never flagged on a chunk (the response
    /// ended with trailers) is read now.
    pub fn finish(mut self) -> Learned {
        if let Mode::Json {
            buf,
            overflow: false,
            done: false,
            ..
        } = &self.mode
        {
            learn_body(self.responses, &mut self.learned, buf, self.encoding);
        }
        self.learned
    }
}

/// Learn from a whole JSON body, a Responses API answer or another.
fn learn_body(responses: bool, learned: &mut Learned, buf: &[u8], encoding: Option<Encoding>) {
    if responses {
        responses::learn_json(learned, buf, encoding);
    } else {
        learn_json(learned, buf, encoding);
    }
}

/// Learn from one SSE event; true when it is a usage-only chunk.
fn learn_event(
    learned: &mut Learned,
    ev: sse::Event<'_>,
    encoding: Option<Encoding>,
    now_ms: u64,
) -> bool {
    if ev.truncated {
        return false;
    }
    if ev.data == b"[DONE]" {
        learned.complete = true;
        return false;
    }
    if ev.name == b"error" {
        learned.stream_error = true;
        return false;
    }
    let Ok(chunk) = serde_json::from_slice::<Body>(ev.data) else {
        return false;
    };
    if chunk.error.is_some() {
        learned.stream_error = true;
    }
    if learned.model.is_none() {
        learned.model = chunk.model.map(Cow::into_owned);
    }
    if learned.id.is_none() {
        learned.id = chunk.id.as_deref().map(bounded_id);
    }
    learn_finish(learned, chunk.choices.as_deref().unwrap_or_default());
    let mut generated = false;
    for c in chunk.choices.iter().flatten() {
        generated |= c.generated(&mut |s| {
            if let Some(e) = encoding {
                let t = &mut learned.completion_estimate.tokens;
                *t = t.saturating_add(e.count(s));
            }
            capture(&mut learned.output, learned.output_max, s);
        });
    }
    if generated && learned.first_token_ms.is_none() {
        learned.first_token_ms = Some(now_ms);
    }
    match chunk.usage {
        Some(u) => {
            learned.usage = Some(u);
            chunk.choices.as_ref().is_none_or(|c| c.is_empty())
        }
        None => false,
    }
}

/// Longest response or provider request id recorded (longer ones are cut).
pub const MAX_ID_BYTES: usize = 256;

/// An id from the wire, cut to `MAX_ID_BYTES` on a character boundary.
pub fn bounded_id(id: &str) -> String {
    let mut end = id.len().min(MAX_ID_BYTES);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.get(..end).unwrap_or_default().to_string()
}

fn learn_json(learned: &mut Learned, buf: &[u8], encoding: Option<Encoding>) {
    let Ok(body) = serde_json::from_slice::<Body>(buf) else {
        return;
    };
    learned.complete = body.error.is_none();
    learned.usage = body.usage;
    learned.model = body.model.map(Cow::into_owned);
    learned.id = body.id.as_deref().map(bounded_id);
    learned.finish_reasons.clear();
    learn_finish(learned, body.choices.as_deref().unwrap_or_default());
    let estimate = encoding.filter(|_| learned.usage.is_none());
    if estimate.is_some() || learned.output.is_some() {
        for c in body.choices.iter().flatten() {
            c.generated(&mut |s| {
                if let Some(e) = estimate {
                    let t = &mut learned.completion_estimate.tokens;
                    *t = t.saturating_add(e.count(s));
                }
                capture(&mut learned.output, learned.output_max, s);
            });
        }
    }
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn ids_are_bounded_on_a_character_boundary() {
        assert_eq!(super::bounded_id("chatcmpl-1"), "chatcmpl-1");
        let long = "é".repeat(200);
        let cut = super::bounded_id(&long);
        assert_eq!(cut.len(), super::MAX_ID_BYTES);
        let odd = format!("x{long}");
        assert_eq!(super::bounded_id(&odd).len(), super::MAX_ID_BYTES - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::tests::RECORDED;
    use proptest::prelude::*;

    /// A meter of `endpoint`'s answers of `content_type`, uncompressed, JSON held up to 1 MiB.
    pub(in crate::meter) fn new_meter(
        endpoint: Endpoint,
        content_type: &str,
        strip: bool,
        encoding: Option<Encoding>,
    ) -> Meter {
        Meter::new(endpoint, content_type, None, strip, encoding, 1 << 20)
    }

    fn run(stream: &[u8], cuts: &[usize], strip: bool) -> (Vec<u8>, Learned) {
        let mut meter = new_meter(
            Endpoint::ChatCompletions,
            "text/event-stream; charset=utf-8",
            strip,
            Some(Encoding::O200kBase),
        );
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(stream.len());
        let mut out = Vec::new();
        let mut prev = 0;
        for (i, &c) in cuts.iter().enumerate() {
            let chunk = &stream[prev..c];
            let end = i + 1 == cuts.len();
            match meter.on_chunk(chunk, end, 100 + i as u64) {
                ChunkAction::Pass => out.extend_from_slice(chunk),
                ChunkAction::Replace(b) => out.extend_from_slice(&b),
            }
            prev = c;
        }
        (out, meter.finish())
    }

    fn without_usage_chunk(s: &str) -> String {
        s.split_inclusive("\n\n")
            .filter(|e| !e.contains("\"choices\":[],\"usage\":{"))
            .collect()
    }

    #[test]
    fn usage_from_recorded_stream() {
        let (out, l) = run(RECORDED.as_bytes(), &[], false);
        assert_eq!(out, RECORDED.as_bytes());
        let u = l.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (Some(19), Some(9), Some(28))
        );
        assert!(l.complete);
        assert_eq!(l.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(l.finish_reasons, ["stop"], "one choice, its reason once");
        assert_eq!(l.first_token_ms, Some(100));
        // "Hello" + "! How can I assist you today?" = 9 tokens, as the provider said.
        assert_eq!(l.completion_estimate.tokens, 9);
    }

    #[test]
    fn strips_only_the_usage_chunk() {
        let (out, l) = run(RECORDED.as_bytes(), &[], true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            without_usage_chunk(RECORDED)
        );
        assert_eq!(l.usage.unwrap().total_tokens, Some(28));
    }

    #[test]
    fn usage_with_choices_is_not_stripped() {
        let s = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\ndata: [DONE]\n\n";
        let (out, l) = run(s.as_bytes(), &[], true);
        assert_eq!(out, s.as_bytes());
        assert_eq!(l.usage.unwrap().total_tokens, Some(2));
    }

    #[test]
    fn no_usage_is_estimated_and_incomplete_stream_noticed() {
        let s = without_usage_chunk(RECORDED);
        let cut = s.find("data: [DONE]").unwrap();
        let (_, l) = run(&s.as_bytes()[..cut], &[], false);
        assert_eq!(l.usage, None);
        assert_eq!(l.completion_estimate.tokens, 9);
        assert!(!l.complete);
    }

    #[test]
    fn json_body() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":1,"audio_tokens":0}}}"#;
        let mut meter = new_meter(
            Endpoint::ChatCompletions,
            "application/json",
            false,
            Some(Encoding::O200kBase),
        );
        assert_eq!(meter.on_chunk(&body[..50], false, 1), ChunkAction::Pass);
        assert_eq!(meter.on_chunk(&body[50..], true, 2), ChunkAction::Pass);
        let l = meter.finish();
        let u = l.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached(), u.reasoning()),
            (Some(8), 4, 1)
        );
        assert_eq!(l.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(l.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(l.finish_reasons, ["stop"]);
        assert!(l.complete);

        // No usage: completion estimated from the message.
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"Hello, world!"}}]}"#;
        let mut meter = new_meter(
            Endpoint::ChatCompletions,
            "application/json",
            false,
            Some(Encoding::O200kBase),
        );
        meter.on_chunk(body, true, 0);
        let l = meter.finish();
        assert_eq!((l.usage, l.completion_estimate.tokens), (None, 4));

        // Over the cap: nothing learned, nothing held.
        let mut meter = Meter::new(
            Endpoint::ChatCompletions,
            "application/json",
            None,
            false,
            None,
            10,
        );
        meter.on_chunk(body, true, 0);
        assert_eq!(meter.finish().usage, None);
    }

    #[test]
    fn compressed_bodies_are_left_alone_and_unflagged_ends_are_read() {
        let meter = Meter::new(
            Endpoint::ChatCompletions,
            "text/event-stream",
            Some("gzip"),
            true,
            None,
            1 << 20,
        );
        assert!(!meter.wants_body());
        let meter = Meter::new(
            Endpoint::ChatCompletions,
            "application/json",
            Some(" identity "),
            false,
            None,
            1 << 20,
        );
        assert!(meter.wants_body());
        // The body never came with end-of-stream (trailers ended it): read at finish.
        let mut meter = new_meter(Endpoint::ChatCompletions, "application/json", false, None);
        meter.on_chunk(
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            false,
            0,
        );
        assert_eq!(meter.finish().usage.and_then(|u| u.total_tokens), Some(7));
    }

    #[test]
    fn huge_event_gives_up_stripping() {
        let big = format!("data: {}\n\n", "x".repeat(MAX_EVENT_BYTES + 10));
        let s = format!("{big}{RECORDED}");
        let (out, _) = run(s.as_bytes(), &[100, 200, MAX_EVENT_BYTES + 5], true);
        assert_eq!(out, s.as_bytes());
    }

    proptest! {
        #[test]
        fn any_split_strips_exactly(cuts in proptest::collection::vec(0usize..5000, 0..30), crlf in any::<bool>()) {
            let text = if crlf { RECORDED.replace("\n", "\r\n") } else { RECORDED.to_string() };
            let expected = if crlf {
                without_usage_chunk(RECORDED).replace("\n", "\r\n")
            } else {
                without_usage_chunk(RECORDED)
            };
            let (out, l) = run(text.as_bytes(), &cuts, true);
            prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
            prop_assert_eq!(l.usage.unwrap().total_tokens, Some(28));
            let (out, _) = run(text.as_bytes(), &cuts, false);
            prop_assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn usage_beyond_u64_saturates_instead_of_losing_the_body() {
        let learn = |usage: &str| {
            let body = format!(
                r#"{{"model":"m","choices":[{{"message":{{"content":"hi"}}}}],"usage":{usage}}}"#
            );
            let mut meter = new_meter(Endpoint::ChatCompletions, "application/json", false, None);
            meter.on_chunk(body.as_bytes(), true, 0);
            meter.finish()
        };
        let l = learn(
            r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1e30,"total_tokens":-1,
               "prompt_tokens_details":{"cached_tokens":12.0}}"#,
        );
        assert_eq!(l.model.as_deref(), Some("m"), "the body is still read");
        let u = l.usage.unwrap();
        assert_eq!(u.prompt_tokens, Some(u64::MAX));
        assert_eq!(u.completion_tokens, Some(u64::MAX));
        assert_eq!(u.total_tokens, Some(0));
        assert_eq!(u.cached(), 12);
        // A stream's usage chunk too.
        let stream = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1e20,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        let (_, l) = run(stream.as_bytes(), &[], false);
        assert_eq!(l.usage.unwrap().prompt_tokens, Some(u64::MAX));
    }
}
