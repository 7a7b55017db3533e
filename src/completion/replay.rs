//! Replaying a stored `chat.completion` as the `chat.completion.chunk` stream a streamed request
//! would have received.

use serde::Serialize;
use serde_json::value::RawValue;

use super::{all_empty, empty, Choice, Completion};

/// Bytes of content (or refusal) per replayed chunk, cut at a character boundary.
const PIECE_BYTES: usize = 1024;

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a str>,
    choices: &'a [ChoiceOut<'a>],
    /// Absent, `null` (`Some(None)`), or the usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a RawValue>>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    /// Absent, `null` or text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// Replay a stored `chat.completion` as the `chat.completion.chunk` SSE stream a streamed
/// request would have received, `data: [DONE]` included. With `include_usage`, every chunk
/// carries `"usage": null` and the stored usage (if any) comes in a last chunk without choices.
/// None when `completion` is not a `chat.completion`, or holds what a stream cannot carry
/// (logprobs, unknown message fields, non-function tool calls).
pub fn to_sse(completion: &[u8], include_usage: bool) -> Option<Vec<u8>> {
    let c: Completion = serde_json::from_slice(completion).ok()?;
    if c.object != "chat.completion" {
        return None;
    }
    let mut out = Vec::new();
    for (position, ch) in c.choices.iter().enumerate() {
        let index = match ch.index {
            Some(i) => i,
            None => u32::try_from(position).ok()?,
        };
        for (delta, finish_reason) in deltas(ch)? {
            let choice = [ChoiceOut {
                index,
                delta,
                logprobs: None,
                finish_reason,
            }];
            write_event(&mut out, &chunk(&c, &choice, include_usage))?;
        }
    }
    if let (true, Some(u)) = (include_usage, &c.usage) {
        // The usage is copied as stored, and a provider's pretty-printed JSON has line breaks,
        // which would end the `data:` line. In valid JSON a line break can only be whitespace
        // between tokens (inside strings they are escaped), so a space does as well.
        let u = RawValue::from_string(u.get().replace(['\n', '\r'], " ")).ok()?;
        let mut last = chunk(&c, &[], include_usage);
        last.usage = Some(Some(&u));
        write_event(&mut out, &last)?;
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(out)
}

/// The deltas a stream sends for one choice, in order, the last with the finish reason: the
/// role (and an empty content when there is content), the content and the refusal in pieces,
/// one delta per tool call. None when the choice holds what a stream cannot carry.
fn deltas(ch: &Choice) -> Option<Vec<(DeltaOut<'_>, Option<&str>)>> {
    let m = &ch.message;
    if ch.logprobs.as_ref().is_some_and(|l| !empty(l)) || !all_empty(&m.other) {
        return None;
    }
    let mut out = vec![(
        DeltaOut {
            role: Some(m.role.as_deref().unwrap_or("assistant")),
            content: Some(m.content.as_ref().map(|_| "")),
            ..DeltaOut::default()
        },
        None,
    )];
    for piece in pieces(m.content.as_deref().unwrap_or("")) {
        let content = Some(Some(piece));
        out.push((
            DeltaOut {
                content,
                ..DeltaOut::default()
            },
            None,
        ));
    }
    if let Some(r) = &m.refusal {
        // An empty refusal is still sent once, so that it comes back as "".
        let mut parts: Vec<&str> = pieces(r).collect();
        if parts.is_empty() {
            parts.push("");
        }
        for piece in parts {
            let refusal = Some(piece);
            out.push((
                DeltaOut {
                    refusal,
                    ..DeltaOut::default()
                },
                None,
            ));
        }
    }
    for (i, t) in m.tool_calls.iter().flatten().enumerate() {
        if t.kind != "function" || !all_empty(&t.other) {
            return None;
        }
        let call = ToolCallOut {
            index: u32::try_from(i).ok()?,
            id: &t.id,
            kind: "function",
            function: FunctionOut {
                name: &t.function.name,
                arguments: &t.function.arguments,
            },
        };
        out.push((
            DeltaOut {
                tool_calls: Some([call]),
                ..DeltaOut::default()
            },
            None,
        ));
    }
    out.push((DeltaOut::default(), ch.finish_reason.as_deref()));
    Some(out)
}

/// A chunk of `c` with these choices (none or one).
fn chunk<'a>(c: &'a Completion, choices: &'a [ChoiceOut<'a>], include_usage: bool) -> ChunkOut<'a> {
    ChunkOut {
        id: c.id.as_deref().unwrap_or(""),
        object: "chat.completion.chunk",
        created: c.created.unwrap_or(0),
        model: c.model.as_deref().unwrap_or(""),
        service_tier: c.service_tier.as_deref(),
        system_fingerprint: c.system_fingerprint.as_deref(),
        choices,
        usage: include_usage.then_some(None),
    }
}

fn write_event(out: &mut Vec<u8>, chunk: &ChunkOut<'_>) -> Option<()> {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, chunk).ok()?;
    out.extend_from_slice(b"\n\n");
    Some(())
}

/// `s` in pieces of about [`PIECE_BYTES`], cut at character boundaries; none when empty.
fn pieces(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = PIECE_BYTES.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at_checked(end)?;
        rest = tail;
        Some(piece)
    })
}
