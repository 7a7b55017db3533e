//! OpenAI's Responses API: `POST /responses` (JSON, or SSE with `stream: true`), `POST
//! /responses/input_tokens`, and `GET /responses/{id}`, `DELETE /responses/{id}` and `GET
//! /responses/{id}/input_items` for the responses the fake stored (any path prefix).
//!
//! The answer is the fake's usual text (`x-fake-completion-tokens` one-token words, capped by
//! `max_output_tokens`: then `status: "incomplete"` with `incomplete_details.reason
//! "max_output_tokens"`), a `json_object` / `json_schema` text for `text.format`, or a
//! `function_call` (`x-fake-tool-call: NAME`, `tool_choice` naming a function or
//! `"required"`), whose arguments are an instance of the function's `parameters`. When the
//! input ends with a `function_call_output`, the text says "The function NAME returned:
//! OUTPUT" (and `x-fake-tool-call` does not call again), so a function-call round trip ends.
//! `x-fake-reasoning-tokens` adds a reasoning item and reasoning tokens (taken first out of
//! `max_output_tokens`), `x-fake-cached-tokens` `input_tokens_details.cached_tokens`,
//! `x-fake-cache-creation-tokens` `cache_write_tokens`; `x-fake-no-usage` answers `usage:
//! null`; `x-fake-id` fixes the response id (every item id derives from it) and `created_at`.
//!
//! Streams are OpenAI's events (`event: TYPE` and `data: JSON` with `sequence_number` from
//! 0; no `[DONE]`). `x-fake-stream-error-after-events: N` sends N events, then an `error`
//! event and `response.failed`; `x-fake-abort-after-events` and `x-fake-chunk-delay-ms` work
//! as for chat.

mod store;
mod turn;

use axum::body::Body;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use super::{json_response, Controls};
use crate::api::{self, ApiError};
use crate::responses::{self, CreateRequest};
use crate::sse;
pub use store::Store;
use store::Stored;
use turn::Turn;

/// `Content-Type` of a Responses stream, as OpenAI sends it.
const STREAM_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// A Responses endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    Create,
    InputTokens,
    Retrieve(String),
    Delete(String),
    InputItems(String),
}

/// The Responses endpoint of `path`: the segments after its last `responses`.
pub(super) fn route(method: &Method, path: &str) -> Option<Op> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segments.iter().rposition(|s| *s == "responses")?;
    let rest = segments.get(at + 1..)?;
    let op = match rest {
        [] => Op::Create,
        ["input_tokens"] => Op::InputTokens,
        [id] if *method == Method::DELETE => Op::Delete((*id).to_owned()),
        [id] => Op::Retrieve((*id).to_owned()),
        [id, "input_items"] => Op::InputItems((*id).to_owned()),
        _ => return None,
    };
    let expected = match op {
        Op::Create | Op::InputTokens => Method::POST,
        Op::Delete(_) => Method::DELETE,
        Op::Retrieve(_) | Op::InputItems(_) => Method::GET,
    };
    (*method == expected).then_some(op)
}

/// `GET /responses/{id}/input_items` query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListQuery {
    limit: usize,
    ascending: bool,
    after: Option<String>,
}

impl ListQuery {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut q = ListQuery {
            limit: 20,
            ascending: false,
            after: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "limit" => match value.parse::<usize>() {
                    Ok(n @ 1..=100) => q.limit = n,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "Invalid 'limit': expected an integer between 1 and 100, but got \
                             '{value}' instead."
                        ))
                        .param("limit"))
                    }
                },
                "order" => match value {
                    "asc" => q.ascending = true,
                    "desc" => q.ascending = false,
                    other => {
                        return Err(responses::invalid_value("order", other, &["asc", "desc"]))
                    }
                },
                "after" => q.after = Some(value.to_owned()),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A parsed Responses request.
pub(super) enum Request {
    Create(Box<CreateRequest>),
    InputTokens(u64),
    Retrieve(String),
    Delete(String),
    InputItems(String, ListQuery),
}

impl Request {
    pub(super) fn prompt_tokens(&self) -> u64 {
        match self {
            Request::Create(r) => r.prompt_tokens,
            Request::InputTokens(n) => *n,
            _ => 0,
        }
    }
}

pub(super) fn parse(op: Op, uri: &Uri, body: &[u8], store: &Store) -> Result<Request, ApiError> {
    let lookup = |id: &str| store.prev(id);
    Ok(match op {
        Op::Create => {
            let obj = api::parse_object(body)?;
            Request::Create(Box::new(responses::parse_create(&obj, &lookup, false)?))
        }
        Op::InputTokens => {
            let obj = api::parse_object(body)?;
            Request::InputTokens(responses::parse_create(&obj, &lookup, true)?.prompt_tokens)
        }
        Op::Retrieve(id) => Request::Retrieve(id),
        Op::Delete(id) => Request::Delete(id),
        Op::InputItems(id) => Request::InputItems(id, ListQuery::parse(uri.query())?),
    })
}

/// 404 for a response the fake does not have, in OpenAI's words.
fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Response with id '{id}' not found."),
    )
}

#[derive(Serialize)]
struct InputTokens {
    object: &'static str,
    input_tokens: u64,
}

#[derive(Serialize)]
struct Deleted<'a> {
    id: &'a str,
    object: &'static str,
    deleted: bool,
}

#[derive(Serialize)]
struct ItemList<'a> {
    object: &'static str,
    data: Vec<&'a Value>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

pub(super) fn respond(store: &Store, req: Request, ctl: &Controls) -> Result<Response, ApiError> {
    match req {
        Request::Create(r) => create(store, &r, ctl),
        Request::InputTokens(n) => Ok(json_response(
            StatusCode::OK,
            &InputTokens {
                object: "response.input_tokens",
                input_tokens: n,
            },
        )),
        Request::Retrieve(id) => {
            let stored = store.get(&id).ok_or_else(|| not_found(&id))?;
            Ok(raw_json(stored.body))
        }
        Request::Delete(id) => {
            if !store.remove(&id) {
                return Err(not_found(&id));
            }
            let body = Deleted {
                id: &id,
                object: "response",
                deleted: true,
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        Request::InputItems(id, q) => {
            let stored = store.get(&id).ok_or_else(|| not_found(&id))?;
            Ok(json_response(
                StatusCode::OK,
                &list(&stored.input_items, &q),
            ))
        }
    }
}

fn list<'a>(items: &'a [Value], q: &ListQuery) -> ItemList<'a> {
    let mut ordered: Vec<&Value> = items.iter().collect();
    if !q.ascending {
        ordered.reverse();
    }
    let id = |v: &&'a Value| v.get("id").and_then(Value::as_str);
    let start = match &q.after {
        None => 0,
        Some(after) => ordered
            .iter()
            .position(|v| id(v) == Some(after.as_str()))
            .map_or(ordered.len(), |at| at + 1),
    };
    let rest = ordered.get(start..).unwrap_or_default();
    let data: Vec<&Value> = rest.iter().take(q.limit).copied().collect();
    ItemList {
        object: "list",
        first_id: data.first().and_then(id),
        last_id: data.last().and_then(id),
        has_more: rest.len() > data.len(),
        data,
    }
}

fn raw_json(body: String) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn create(store: &Store, req: &CreateRequest, ctl: &Controls) -> Result<Response, ApiError> {
    let turn = Turn::plan(req, ctl)?;
    let output = turn.items();
    // A failed response continues with its input only: its output never arrived.
    let remember = |view: &responses::wire::ResponseView, failed: bool| {
        if req.echo.store {
            let prev = if failed {
                responses::Prev {
                    messages: req.input.messages.clone(),
                    calls: req.input.calls.clone(),
                    pending: Vec::new(),
                }
            } else {
                turn.prev(req)
            };
            let stored = Stored {
                body: serde_json::to_string(view).unwrap_or_default(),
                input_items: turn::input_items(req, &turn.id),
                prev,
            };
            store.insert(&turn.id, stored);
        }
    };
    let finished = turn.view(req, &output);
    if !req.stream {
        remember(&finished, false);
        return Ok(json_response(StatusCode::OK, &finished));
    }
    let frames = turn::frames(req, &turn, &output);
    // The error replaces the events from the n-th on (never the last one), as for chat.
    let error_after = ctl.stream_error_after_events.map(|n| {
        let n = n.min(frames.len().saturating_sub(1));
        (n, turn::failure_frames(req, &turn, n))
    });
    match &error_after {
        Some(_) => remember(&turn.failed(req), true),
        None => remember(&finished, false),
    }
    Ok(sse::frames_response(
        frames,
        STREAM_CONTENT_TYPE,
        ctl.pace(),
        ctl.abort_after_events,
        error_after,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_the_segments_after_responses() {
        let post = Method::POST;
        let get = Method::GET;
        let delete = Method::DELETE;
        assert_eq!(route(&post, "/v1/responses"), Some(Op::Create));
        assert_eq!(route(&post, "/openai/v1/responses/"), Some(Op::Create));
        assert_eq!(
            route(&post, "/v1/responses/input_tokens"),
            Some(Op::InputTokens)
        );
        assert_eq!(
            route(&get, "/x/v1/responses/resp_1"),
            Some(Op::Retrieve("resp_1".into()))
        );
        assert_eq!(
            route(&delete, "/v1/responses/resp_1"),
            Some(Op::Delete("resp_1".into()))
        );
        assert_eq!(
            route(&get, "/v1/responses/resp_1/input_items"),
            Some(Op::InputItems("resp_1".into()))
        );
        assert_eq!(route(&get, "/v1/responses"), None);
        assert_eq!(route(&post, "/v1/responses/resp_1"), None);
        assert_eq!(route(&post, "/v1/responses/resp_1/cancel"), None);
        assert_eq!(route(&post, "/v1/chat/completions"), None);
    }

    #[test]
    fn list_query_defaults_and_limits() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!((q.limit, q.ascending, q.after), (20, false, None));
        let q = ListQuery::parse(Some("order=asc&limit=2&after=msg_1")).unwrap();
        assert_eq!((q.limit, q.ascending), (2, true));
        assert_eq!(q.after.as_deref(), Some("msg_1"));
        for bad in ["limit=0", "limit=101", "limit=x", "order=up"] {
            let e = ListQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn lists_pages_in_either_order() {
        let items: Vec<Value> = (0..5)
            .map(|i| serde_json::json!({"id": format!("msg_{i}")}))
            .collect();
        let ids = |l: &ItemList| -> Vec<String> {
            l.data
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let q = |s| ListQuery::parse(Some(s)).unwrap();
        let l = list(&items, &q("limit=2"));
        assert_eq!(ids(&l), ["msg_4", "msg_3"]);
        assert_eq!(
            (l.first_id, l.last_id, l.has_more),
            (Some("msg_4"), Some("msg_3"), true)
        );
        let l = list(&items, &q("order=asc&after=msg_2"));
        assert_eq!(ids(&l), ["msg_3", "msg_4"]);
        assert!(!l.has_more);
        let l = list(&items, &q("after=nope"));
        assert!(l.data.is_empty() && l.first_id.is_none());
    }
}
