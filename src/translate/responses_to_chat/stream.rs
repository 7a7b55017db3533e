//! A chat completion chunk stream as the Responses API's event sequence.
//!
//! | chat chunks | Responses events |
//! |---|---|
//! | the first chunk (or error, or `[DONE]`) | `response.created`, `response.in_progress` |
//! | `delta.content` | a `message` item: `response.output_item.added`, `response.content_part.added` (`output_text`), then `response.output_text.delta` per delta |
//! | `delta.refusal` | the message's `refusal` part: `response.content_part.added`, `response.refusal.delta` |
//! | `delta.tool_calls[]`, a new call | the open item closes; a `function_call` item: `response.output_item.added`, then `response.function_call_arguments.delta` per delta |
//! | the next item, or `finish_reason` | the open item's `.done` events: `response.output_text.done` / `response.refusal.done` and `response.content_part.done`, or `response.function_call_arguments.done`; then `response.output_item.done` |
//! | the usage chunk | the usage `response.completed` carries |
//! | `[DONE]` | `response.completed`, or `response.incomplete` (finish `length` or `content_filter`) |
//! | `{"error": ...}` | `error`, then `response.failed` (what follows is dropped) |
//!
//! Every event carries `sequence_number` (from 0). A stream cut before `[DONE]` ends with no
//! `response.completed`: the translator never claims an answer the provider did not finish.
//! The translator keeps the answer's text and arguments (the `.done` events and the final
//! `response` repeat them whole, as OpenAI's do), the items' ids and counters; nothing of the
//! chunks' framing. A chat provider's reasoning text (`reasoning_content`) is not carried.

use serde_json::{json, Map, Value};

use super::response::{
    arguments_text, call_item, message_item, outcome, part, response_object, Head,
};
use super::{error_body, failed_code, usage_to_responses, ResponsesEcho};
use crate::translate::{ResponseContext, StreamTranslate};

/// The stream translator for one answer to the request `echo` was made from; `context.created`
/// is its time when the chunks state none.
pub fn translate_stream(context: &ResponseContext, echo: ResponsesEcho) -> Stream {
    Stream::new(context.created, echo)
}

/// One output item as it stands.
#[derive(Debug)]
struct Item {
    kind: Kind,
    /// `in_progress` until its `.done` events, then `completed` (or `incomplete`).
    status: &'static str,
}

#[derive(Debug)]
enum Kind {
    /// An assistant message: its parts (`refusal` or `output_text`) and their text.
    Message(Vec<(bool, String)>),
    /// A function call, by the chat tool call's `index`.
    Call {
        index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Translates a chat completion chunk stream into Responses events, one chunk at a time.
#[derive(Debug)]
pub struct Stream {
    echo: ResponsesEcho,
    /// The answer's time when its chunks state none.
    created: u64,
    head: Head,
    started: bool,
    sequence: u64,
    /// The output so far: the last item is open while `open`.
    items: Vec<Item>,
    open: bool,
    finish: Option<String>,
    usage: Option<Value>,
    /// `response.failed` was sent.
    failed: bool,
    done: bool,
}

impl StreamTranslate for Stream {
    /// Chat chunks have no event names: only the data counts.
    fn event(&mut self, _name: &str, data: &[u8]) -> String {
        self.data(data)
    }

    /// Whether `[DONE]` arrived.
    fn finished(&self) -> bool {
        self.done
    }
}

impl Stream {
    pub fn new(created: u64, echo: ResponsesEcho) -> Stream {
        Stream {
            echo,
            created,
            head: Head::default(),
            started: false,
            sequence: 0,
            items: Vec::new(),
            open: false,
            finish: None,
            usage: None,
            failed: false,
            done: false,
        }
    }

    /// Translate one chat SSE event's data; the Responses SSE text to send in its place.
    pub fn data(&mut self, data: &[u8]) -> String {
        let mut out = String::new();
        if self.done {
            return out;
        }
        if data == b"[DONE]" {
            self.end(&mut out);
            return out;
        }
        let Ok(c) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        if self.failed {
            return out;
        }
        self.start(&mut out, &c);
        if c.get("error").is_some_and(|e| !e.is_null()) {
            self.fail(&mut out, &c);
            return out;
        }
        if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_to_responses(u));
        }
        let Some(choice) = c.get("choices").and_then(|c| c.get(0)) else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for (refusal, k) in [(false, "content"), (true, "refusal")] {
            if let Some(t) = delta
                .get(k)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.text(&mut out, refusal, t);
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call(&mut out, call);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
            self.close(&mut out);
        }
        out
    }

    /// Append one event: `fields` with its `type` and `sequence_number`.
    fn emit(&mut self, out: &mut String, kind: &str, mut fields: Value) {
        if let Some(o) = fields.as_object_mut() {
            o.insert("type".into(), kind.into());
            o.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        out.push_str(&format!("event: {kind}\ndata: {fields}\n\n"));
    }

    /// The output item at `n` as it stands.
    fn item_json(&self, n: usize, item: &Item) -> Value {
        match &item.kind {
            Kind::Message(parts) => {
                let content = parts.iter().map(|(r, t)| part(*r, t)).collect();
                message_item(self.head.item_id(n, false), item.status, content)
            }
            Kind::Call {
                call_id,
                name,
                arguments,
                ..
            } => call_item(
                self.head.item_id(n, true),
                item.status,
                call_id,
                name,
                arguments,
            ),
        }
    }

    /// The `response` object as it stands, of `status`.
    fn response(&self, status: &str) -> Map<String, Value> {
        let output = self
            .items
            .iter()
            .enumerate()
            .map(|(n, i)| self.item_json(n, i))
            .collect();
        let usage = self.usage.clone().unwrap_or(Value::Null);
        response_object(&self.echo, &self.head, status, output, usage)
    }

    /// `response.created` and `response.in_progress`, before anything else.
    fn start(&mut self, out: &mut String, chunk: &Value) {
        if self.started {
            return;
        }
        self.started = true;
        self.head = Head::of(chunk, self.created);
        let r = Value::Object(self.response("in_progress"));
        self.emit(out, "response.created", json!({"response": r}));
        self.emit(out, "response.in_progress", json!({"response": r}));
    }

    /// Close the open item, then open `kind` as a new one; its output index.
    fn open_item(&mut self, out: &mut String, kind: Kind) -> usize {
        self.close(out);
        let n = self.items.len();
        self.items.push(Item {
            kind,
            status: "in_progress",
        });
        self.open = true;
        if let Some(item) = self.items.get(n) {
            let item = self.item_json(n, item);
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": n, "item": item}),
            );
        }
        n
    }

    /// The open message's output index, opening one if the open item is not a message.
    fn message(&mut self, out: &mut String) -> usize {
        match self.items.last() {
            Some(Item {
                kind: Kind::Message(_),
                ..
            }) if self.open => self.items.len() - 1,
            _ => self.open_item(out, Kind::Message(Vec::new())),
        }
    }

    /// A piece of text (or of a refusal): into the open message's part of its kind, or a new
    /// part (the open one done), in the open message or a new one.
    fn text(&mut self, out: &mut String, refusal: bool, t: &str) {
        let n = self.message(out);
        let item_id = self.head.item_id(n, false);
        let new_part = match self.items.get(n).map(|i| &i.kind) {
            Some(Kind::Message(parts)) => parts.last().is_none_or(|(r, _)| *r != refusal),
            _ => return,
        };
        if new_part {
            self.close_part(out, n);
            let j = self.push_part(n, refusal);
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": n, "content_index": j,
                       "part": part(refusal, "")}),
            );
        }
        let Some(Kind::Message(parts)) = self.items.get_mut(n).map(|i| &mut i.kind) else {
            return;
        };
        let j = parts.len().saturating_sub(1);
        if let Some((_, text)) = parts.last_mut() {
            text.push_str(t);
        }
        let mut fields = json!({"item_id": item_id, "output_index": n, "content_index": j,
                                "delta": t});
        let kind = if refusal {
            "response.refusal.delta"
        } else {
            if let Some(o) = fields.as_object_mut() {
                o.insert("logprobs".into(), json!([]));
            }
            "response.output_text.delta"
        };
        self.emit(out, kind, fields);
    }

    /// Add an empty part to the message at `n`; its content index.
    fn push_part(&mut self, n: usize, refusal: bool) -> usize {
        match self.items.get_mut(n).map(|i| &mut i.kind) {
            Some(Kind::Message(parts)) => {
                parts.push((refusal, String::new()));
                parts.len() - 1
            }
            _ => 0,
        }
    }

    /// The `.done` events of the last part of the message at `n`, if it has one.
    fn close_part(&mut self, out: &mut String, n: usize) {
        let Some(Kind::Message(parts)) = self.items.get(n).map(|i| &i.kind) else {
            return;
        };
        let Some((refusal, text)) = parts.last() else {
            return;
        };
        let (refusal, text) = (*refusal, text.clone());
        let j = parts.len() - 1;
        let item_id = self.head.item_id(n, false);
        let mut fields = json!({"item_id": item_id, "output_index": n, "content_index": j});
        let kind = match fields.as_object_mut() {
            Some(o) if refusal => {
                o.insert("refusal".into(), text.as_str().into());
                "response.refusal.done"
            }
            Some(o) => {
                o.insert("text".into(), text.as_str().into());
                o.insert("logprobs".into(), json!([]));
                "response.output_text.done"
            }
            None => return,
        };
        self.emit(out, kind, fields);
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": n, "content_index": j,
                   "part": part(refusal, &text)}),
        );
    }

    /// A chat tool call's delta: a new `function_call` item for a new call, then its
    /// arguments' piece. A piece for a call already done (a provider that interleaves calls)
    /// has no item to go to and is dropped.
    fn tool_call(&mut self, out: &mut String, call: &Value) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let f = call.get("function").unwrap_or(&Value::Null);
        let same = match self.items.last() {
            Some(Item {
                kind: Kind::Call {
                    index: i, call_id, ..
                },
                ..
            }) if self.open => *i == index && id.is_none_or(|id| id == call_id.as_str()),
            _ => false,
        };
        if !same {
            let seen = self
                .items
                .iter()
                .any(|it| matches!(it.kind, Kind::Call { index: i, .. } if i == index));
            if id.is_none() && seen {
                return;
            }
            let n = self.items.len();
            let call_id = id.map_or_else(|| format!("call_{}_{n}", self.head.suffix), String::from);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let arguments = String::new();
            self.open_item(
                out,
                Kind::Call {
                    index,
                    call_id,
                    name,
                    arguments,
                },
            );
        }
        let args = arguments_text(f.get("arguments"));
        if args.is_empty() {
            return;
        }
        let n = self.items.len() - 1;
        if let Some(Kind::Call { arguments, .. }) = self.items.get_mut(n).map(|i| &mut i.kind) {
            arguments.push_str(&args);
        }
        let item_id = self.head.item_id(n, true);
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": n, "delta": args}),
        );
    }

    /// The open item's `.done` events.
    fn close(&mut self, out: &mut String) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let Some(n) = self.items.len().checked_sub(1) else {
            return;
        };
        let incomplete = outcome(self.finish.as_deref()).0 == "incomplete";
        let status = match self.items.get(n).map(|i| &i.kind) {
            Some(Kind::Message(_)) => {
                self.close_part(out, n);
                if incomplete {
                    "incomplete"
                } else {
                    "completed"
                }
            }
            Some(Kind::Call { arguments, .. }) => {
                let fields = json!({"item_id": self.head.item_id(n, true), "output_index": n,
                                    "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", fields);
                "completed"
            }
            None => return,
        };
        if let Some(item) = self.items.get_mut(n) {
            item.status = status;
        }
        if let Some(item) = self.items.get(n) {
            let item = self.item_json(n, item);
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": n, "item": item}),
            );
        }
    }

    /// `[DONE]`: the open item done, then `response.completed` (or `response.incomplete`) with
    /// the whole output and the usage. After `response.failed`, nothing more.
    fn end(&mut self, out: &mut String) {
        self.done = true;
        if self.failed {
            return;
        }
        self.start(out, &Value::Null);
        self.close(out);
        let (status, incomplete) = outcome(self.finish.as_deref());
        let mut r = self.response(status);
        r.insert("incomplete_details".into(), incomplete);
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, json!({"response": r}));
    }

    /// An in-band error: the `error` event, then `response.failed` with the output so far.
    fn fail(&mut self, out: &mut String, chunk: &Value) {
        self.failed = true;
        let body = error_body(chunk, "server_error");
        let e = body.get("error").cloned().unwrap_or_default();
        let field = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
        let fields = json!({"code": field("code"), "message": field("message"),
                            "param": field("param")});
        self.emit(out, "error", fields);
        let mut r = self.response("failed");
        r.insert(
            "error".into(),
            json!({"code": failed_code(&body), "message": field("message")}),
        );
        self.emit(out, "response.failed", json!({"response": r}));
    }
}
