//! Assembling a `chat.completion.chunk` SSE stream into the `chat.completion` a non-streamed
//! request would have returned.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{all_empty, empty, function_type, Choice, Completion, FunctionCall, Message, ToolCall};
use crate::sse;
use crate::wire::Function;

/// Room for one SSE event's JSON and framing beyond what it adds to the completion.
pub(super) const EVENT_SLACK: usize = 64 * 1024;
/// Bytes counted for each choice and tool call besides its texts.
const ENTRY_BYTES: usize = 128;

// ---- Stream chunks as a provider sends them.

#[derive(Deserialize)]
struct ChunkIn<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    system_fingerprint: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    service_tier: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceIn<'a>>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallIn<'a>>>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
struct ToolCallIn<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<Function<'a>>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// Builds the `chat.completion` equivalent to a `chat.completion.chunk` SSE stream.
#[derive(Debug)]
pub struct Assembler {
    pub(super) parser: sse::Parser,
    pub(super) state: State,
}

#[derive(Debug, Default)]
pub(super) struct State {
    budget: Budget,
    failed: bool,
    done: bool,
    id: Option<String>,
    created: Option<u64>,
    model: Option<String>,
    system_fingerprint: Option<String>,
    service_tier: Option<String>,
    pub(super) choices: BTreeMap<u32, ChoiceAcc>,
    usage: Option<Box<RawValue>>,
}

#[derive(Debug, Default)]
struct Budget {
    used: usize,
    max: usize,
}

impl Budget {
    /// Count `n` more bytes; None when that passes the bound.
    fn take(&mut self, n: usize) -> Option<()> {
        self.used = self.used.saturating_add(n);
        (self.used <= self.max).then_some(())
    }

    fn give(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
    }
}

#[derive(Debug, Default)]
pub(super) struct ChoiceAcc {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: BTreeMap<u32, ToolAcc>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default)]
struct ToolAcc {
    id: String,
    name: String,
    arguments: String,
}

impl Assembler {
    /// An assembler keeping at most `max_bytes` of completion.
    pub fn new(max_bytes: usize) -> Assembler {
        Assembler {
            parser: sse::Parser::new(max_bytes.saturating_add(EVENT_SLACK)),
            state: State {
                budget: Budget {
                    used: 0,
                    max: max_bytes,
                },
                ..State::default()
            },
        }
    }

    /// The next bytes of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.state.failed || self.state.done {
            return;
        }
        let state = &mut self.state;
        self.parser.feed(chunk, |_, ev| state.event(ev));
        if state.failed {
            // Let go of a partly read event too.
            self.parser = sse::Parser::new(0);
        }
    }

    /// True once the stream can no longer give a storable completion (feeding more is useless).
    pub fn gave_up(&self) -> bool {
        self.state.failed
    }

    /// The completion JSON, or None when the stream is not one that may be stored: no
    /// `[DONE]`, no choices, a choice without a finish reason, an error, an unreadable or cut
    /// event, something the completion could not carry, or more than `max_bytes`.
    pub fn finish(self) -> Option<Vec<u8>> {
        let s = self.state;
        if s.failed
            || !s.done
            || s.choices.is_empty()
            || s.choices.values().any(|c| c.finish_reason.is_none())
        {
            return None;
        }
        let completion = Completion {
            id: Some(s.id.unwrap_or_default()),
            object: "chat.completion".into(),
            created: Some(s.created.unwrap_or(0)),
            model: Some(s.model.unwrap_or_default()),
            service_tier: s.service_tier,
            system_fingerprint: s.system_fingerprint,
            choices: s
                .choices
                .into_iter()
                .map(|(index, c)| Choice {
                    index: Some(index),
                    message: Message {
                        role: Some(c.role.unwrap_or_else(|| "assistant".into())),
                        content: c.content,
                        refusal: c.refusal,
                        tool_calls: (!c.tool_calls.is_empty()).then(|| {
                            c.tool_calls
                                .into_values()
                                .map(|t| ToolCall {
                                    _index: None,
                                    id: t.id,
                                    kind: function_type(),
                                    function: FunctionCall {
                                        name: t.name,
                                        arguments: t.arguments,
                                    },
                                    other: Map::new(),
                                })
                                .collect()
                        }),
                        other: Map::new(),
                    },
                    logprobs: None,
                    finish_reason: c.finish_reason,
                })
                .collect(),
            usage: s.usage,
        };
        let out = serde_json::to_vec(&completion).ok()?;
        (out.len() <= s.budget.max).then_some(out)
    }
}

impl State {
    fn event(&mut self, ev: sse::Event<'_>) {
        if self.failed || self.done {
            return;
        }
        if ev.truncated || !(ev.name.is_empty() || ev.name == b"message") {
            return self.fail();
        }
        if ev.data == b"[DONE]" {
            self.done = true;
            return;
        }
        let ok = serde_json::from_slice::<ChunkIn>(ev.data)
            .ok()
            .and_then(|c| self.apply(c));
        if ok.is_none() {
            self.fail();
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.choices = BTreeMap::new();
        self.usage = None;
    }

    /// One chunk; None when the stream cannot be stored.
    fn apply(&mut self, c: ChunkIn<'_>) -> Option<()> {
        if c.error.is_some() || c.object.is_some_and(|o| o != "chat.completion.chunk") {
            return None;
        }
        let budget = &mut self.budget;
        keep_first(&mut self.id, c.id, budget)?;
        keep_first(&mut self.model, c.model, budget)?;
        keep_first(&mut self.system_fingerprint, c.system_fingerprint, budget)?;
        keep_first(&mut self.service_tier, c.service_tier, budget)?;
        if self.created.is_none() {
            // Azure's first chunk (prompt filter results) has an empty id and a zero time.
            self.created = c.created.filter(|&t| t != 0);
        }
        if let Some(u) = c.usage {
            if let Some(old) = self.usage.take() {
                budget.give(old.get().len());
            }
            budget.take(u.get().len())?;
            self.usage = Some(u.to_owned());
        }
        for ch in c.choices.into_iter().flatten() {
            if ch.logprobs.as_ref().is_some_and(|l| !empty(l)) {
                return None;
            }
            let acc = match self.choices.entry(ch.index) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    budget.take(ENTRY_BYTES)?;
                    v.insert(ChoiceAcc::default())
                }
            };
            if let Some(d) = ch.delta {
                acc.apply(d, budget)?;
            }
            if let Some(r) = ch.finish_reason.filter(|r| !r.is_empty()) {
                budget.take(r.len())?;
                acc.finish_reason = Some(r.into_owned());
            }
        }
        Some(())
    }
}

impl ChoiceAcc {
    fn apply(&mut self, d: DeltaIn<'_>, budget: &mut Budget) -> Option<()> {
        if !all_empty(&d.other) {
            return None;
        }
        keep_first(&mut self.role, d.role, budget)?;
        for (slot, piece) in [
            (&mut self.content, d.content),
            (&mut self.refusal, d.refusal),
        ] {
            if let Some(p) = piece {
                budget.take(p.len())?;
                slot.get_or_insert_with(String::new).push_str(&p);
            }
        }
        for t in d.tool_calls.into_iter().flatten() {
            if !all_empty(&t.other) || t.kind.is_some_and(|k| !k.is_empty() && k != "function") {
                return None;
            }
            // Without an index, pieces of different calls cannot be told apart.
            let call = match self.tool_calls.entry(t.index?) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    budget.take(ENTRY_BYTES)?;
                    v.insert(ToolAcc::default())
                }
            };
            same_as_first(&mut call.id, t.id, budget)?;
            if let Some(f) = t.function {
                same_as_first(&mut call.name, f.name, budget)?;
                if let Some(a) = f.arguments {
                    budget.take(a.len())?;
                    call.arguments.push_str(&a);
                }
            }
        }
        Some(())
    }
}

/// Keep the first non-empty value of a field sent on every chunk.
fn keep_first(slot: &mut Option<String>, v: Option<Cow<'_, str>>, b: &mut Budget) -> Option<()> {
    if slot.is_none() {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            b.take(v.len())?;
            *slot = Some(v.into_owned());
        }
    }
    Some(())
}

/// A tool call's id or name: sent once, or repeated unchanged. A different value (a name sent
/// in pieces, say) is not something to guess about: None.
fn same_as_first(slot: &mut String, v: Option<Cow<'_, str>>, b: &mut Budget) -> Option<()> {
    match v {
        Some(v) if !v.is_empty() => {
            if slot.is_empty() {
                b.take(v.len())?;
                *slot = v.into_owned();
            } else if *slot != *v {
                return None;
            }
        }
        _ => {}
    }
    Some(())
}
