//! The meter on Responses API answers: JSON bodies and streams, whole and in every split.

use proptest::prelude::*;

use super::super::tests::new_meter;
use super::super::{ChunkAction, Learned, Usage};
use crate::request::Endpoint;
use crate::tokens::Encoding;

const ID: &str = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
const MODEL: &str = "gpt-4o-2024-08-06";

/// The `response` object of the stream's events, `status` and `usage` as given.
fn response(status: &str, output: &str, usage: &str) -> String {
    format!(
        r#"{{"id":"{ID}","object":"response","created_at":1741476542,"status":"{status}","background":false,"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"{MODEL}","output":[{output}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{{"effort":null,"summary":null}},"store":true,"temperature":1.0,"text":{{"format":{{"type":"text"}},"verbosity":"medium"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}"#
    )
}

const USAGE: &str = r#"{"input_tokens":19,"input_tokens_details":{"cached_tokens":4},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":28}"#;
const TEXT: &str = "Hello! How can I assist you today?";

fn event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn message(status: &str, text: &str) -> String {
    format!(
        r#"{{"id":"msg_1","type":"message","status":"{status}","content":[{{"type":"output_text","annotations":[],"logprobs":[],"text":"{text}"}}],"role":"assistant"}}"#
    )
}

/// A text answer as OpenAI streams it, up to its terminal event (`end` names it, `usage` is its
/// `response.usage`; no `end`: the stream is cut there).
fn stream(end: Option<&str>, usage: &str) -> String {
    let mut s = event(
        "response.created",
        &format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response("in_progress", "", "null")
        ),
    );
    s += &event(
        "response.in_progress",
        &format!(
            r#"{{"type":"response.in_progress","sequence_number":1,"response":{}}}"#,
            response("in_progress", "", "null")
        ),
    );
    s += &event(
        "response.output_item.added",
        r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","content":[],"role":"assistant"}}"#,
    );
    s += &event(
        "response.content_part.added",
        r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}"#,
    );
    for (i, d) in ["Hello", "! How can I assist you today?"]
        .iter()
        .enumerate()
    {
        s += &event(
            "response.output_text.delta",
            &format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{},"item_id":"msg_1","output_index":0,"content_index":0,"delta":"{d}","logprobs":[]}}"#,
                4 + i
            ),
        );
    }
    s += &event(
        "response.output_text.done",
        &format!(
            r#"{{"type":"response.output_text.done","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"text":"{TEXT}","logprobs":[]}}"#
        ),
    );
    s += &event(
        "response.content_part.done",
        &format!(
            r#"{{"type":"response.content_part.done","sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,"part":{{"type":"output_text","annotations":[],"logprobs":[],"text":"{TEXT}"}}}}"#
        ),
    );
    s += &event(
        "response.output_item.done",
        &format!(
            r#"{{"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{}}}"#,
            message("completed", TEXT)
        ),
    );
    if let Some(end) = end {
        let status = end.trim_start_matches("response.");
        s += &event(
            end,
            &format!(
                r#"{{"type":"{end}","sequence_number":9,"response":{}}}"#,
                response(status, &message("completed", TEXT), usage)
            ),
        );
    }
    s
}

/// The stream fed to a Responses meter in chunks cut at `cuts`; what passed and what it learned.
fn run(stream: &[u8], cuts: &[usize], strip: bool) -> (Vec<u8>, Learned) {
    let mut meter = new_meter(
        Endpoint::Responses,
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
        match meter.on_chunk(chunk, i + 1 == cuts.len(), 100 + i as u64) {
            ChunkAction::Pass => out.extend_from_slice(chunk),
            ChunkAction::Replace(b) => panic!("a Responses chunk was replaced by {b:?}"),
        }
        prev = c;
    }
    (out, meter.finish())
}

fn the_usage() -> Usage {
    Usage {
        prompt_tokens: Some(19),
        completion_tokens: Some(9),
        total_tokens: Some(28),
        prompt_tokens_details: Some(super::PromptDetails {
            cached_tokens: Some(4),
            cache_creation_tokens: None,
        }),
        completion_tokens_details: Some(super::CompletionDetails {
            reasoning_tokens: Some(2),
        }),
    }
}

/// What the whole completed stream teaches, the first token's time apart.
fn completed() -> Learned {
    Learned {
        usage: Some(the_usage()),
        completion_estimate: crate::tokens::Count {
            // "Hello" + "! How can I assist you today?": 9 tokens, as the provider said.
            tokens: 9,
            estimated: false,
        },
        first_token_ms: Some(100),
        model: Some(MODEL.into()),
        id: Some(ID.into()),
        complete: true,
        stream_error: false,
        ..Learned::default()
    }
}

#[test]
fn a_completed_stream_whole_and_in_every_split() {
    let s = stream(Some("response.completed"), USAGE);
    let (out, l) = run(s.as_bytes(), &[], true);
    assert_eq!(out, s.as_bytes());
    assert_eq!(l, completed());
    let u = l.usage.unwrap();
    assert_eq!((u.cached(), u.reasoning()), (4, 2));
    for cut in 0..=s.len() {
        let (out, mut l) = run(s.as_bytes(), &[cut], false);
        assert_eq!(out, s.as_bytes(), "cut at {cut}");
        // The first token came in the first chunk or the second.
        assert!(matches!(l.first_token_ms, Some(100 | 101)), "cut at {cut}");
        l.first_token_ms = Some(100);
        assert_eq!(l, completed(), "cut at {cut}");
    }
}

#[test]
fn the_first_token_is_the_first_delta() {
    let s = stream(Some("response.completed"), USAGE);
    let start = s.find("event: response.output_text.delta").unwrap();
    let end = start + s[start..].find("\n\n").unwrap() + 2;
    let first = |cuts: &[usize]| run(s.as_bytes(), cuts, false).1.first_token_ms;
    // The delta's event is complete in the chunk that ends it, no sooner.
    assert_eq!(first(&[start]), Some(101));
    assert_eq!(first(&[end - 1]), Some(101));
    assert_eq!(first(&[end]), Some(100));
    assert_eq!(first(&[10, start]), Some(102));
}

#[test]
fn without_usage_the_completion_is_estimated() {
    let s = stream(Some("response.completed"), "null");
    let (_, l) = run(s.as_bytes(), &[], false);
    assert_eq!(
        l,
        Learned {
            usage: None,
            ..completed()
        }
    );
}

#[test]
fn incomplete_is_a_complete_answer_failed_an_error() {
    let usage = r#"{"input_tokens":19,"output_tokens":16,"total_tokens":35}"#;
    let (_, l) = run(
        stream(Some("response.incomplete"), usage).as_bytes(),
        &[],
        false,
    );
    assert!(l.complete && !l.stream_error);
    assert_eq!(l.usage.unwrap().completion_tokens, Some(16));
    let (_, l) = run(
        stream(Some("response.failed"), usage).as_bytes(),
        &[],
        false,
    );
    assert!(l.complete && l.stream_error);
    assert_eq!(l.usage.unwrap().total_tokens, Some(35));
    // A failure with no usage: the error, the estimate.
    let (_, l) = run(
        stream(Some("response.failed"), "null").as_bytes(),
        &[],
        false,
    );
    assert!(l.stream_error && l.usage.is_none());
    assert_eq!(l.completion_estimate.tokens, 9);
}

#[test]
fn an_error_event_ends_the_answer_as_an_error() {
    let error = r#"{"type":"error","code":"server_error","message":"The server had an error.","param":null,"sequence_number":9}"#;
    let s = stream(None, "") + &event("error", error);
    let (out, l) = run(s.as_bytes(), &[], false);
    assert_eq!(out, s.as_bytes());
    assert!(l.complete && l.stream_error && l.usage.is_none());
    // Without the `event:` line, the data's type says it.
    let s = stream(None, "") + &format!("data: {error}\n\n");
    let (_, l) = run(s.as_bytes(), &[], false);
    assert!(l.complete && l.stream_error);
}

#[test]
fn a_cut_stream_is_incomplete() {
    let s = stream(None, "");
    let (_, l) = run(s.as_bytes(), &[], false);
    assert_eq!(
        l,
        Learned {
            usage: None,
            complete: false,
            ..completed()
        }
    );
    // Cut inside the terminal event: the same.
    let full = stream(Some("response.completed"), USAGE);
    let (_, l) = run(&full.as_bytes()[..full.len() - 40], &[], false);
    assert!(!l.complete && l.usage.is_none());
    // A chat `[DONE]` ends nothing here.
    let (_, l) = run((s + "data: [DONE]\n\n").as_bytes(), &[], false);
    assert!(!l.complete);
}

#[test]
fn a_function_call_stream() {
    let args = ["{\"city\":", "\"Paris\"}"];
    let mut s = event(
        "response.created",
        &format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response("in_progress", "", "null")
        ),
    );
    s += &event(
        "response.output_item.added",
        r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_1","name":"get_weather"}}"#,
    );
    for (i, d) in args.iter().enumerate() {
        let d = serde_json::to_string(d).unwrap();
        s += &event(
            "response.function_call_arguments.delta",
            &format!(
                r#"{{"type":"response.function_call_arguments.delta","sequence_number":{},"item_id":"fc_1","output_index":0,"delta":{d}}}"#,
                2 + i
            ),
        );
    }
    s += &event(
        "response.completed",
        &format!(
            r#"{{"type":"response.completed","sequence_number":5,"response":{}}}"#,
            response("completed", "", "null")
        ),
    );
    let (_, l) = run(s.as_bytes(), &[], false);
    let o200k = Encoding::O200kBase;
    let expected: u64 = ["get_weather", args[0], args[1]]
        .iter()
        .map(|t| o200k.count_uncached(t))
        .sum();
    assert_eq!(l.completion_estimate.tokens, expected);
    assert_eq!(l.first_token_ms, Some(100));
    assert!(l.complete && l.usage.is_none());
}

#[test]
fn a_chat_meter_does_not_read_a_responses_stream() {
    let s = stream(Some("response.completed"), USAGE);
    let mut meter = new_meter(Endpoint::ChatCompletions, "text/event-stream", false, None);
    meter.on_chunk(s.as_bytes(), true, 0);
    assert_eq!(meter.finish().usage, None);
}

proptest! {
    #[test]
    fn any_split_teaches_the_same(cuts in proptest::collection::vec(0usize..12000, 0..30),
                                  crlf in any::<bool>(), strip in any::<bool>()) {
        let s = stream(Some("response.completed"), USAGE);
        let s = if crlf { s.replace('\n', "\r\n") } else { s };
        let (out, mut l) = run(s.as_bytes(), &cuts, strip);
        prop_assert_eq!(out, s.as_bytes());
        prop_assert!(l.first_token_ms.is_some());
        l.first_token_ms = Some(100);
        prop_assert_eq!(l, completed());
    }
}

fn json(body: &str) -> Learned {
    let mut meter = new_meter(
        Endpoint::Responses,
        "application/json",
        false,
        Some(Encoding::O200kBase),
    );
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    assert_eq!(meter.on_chunk(a, false, 1), ChunkAction::Pass);
    assert_eq!(meter.on_chunk(b, true, 2), ChunkAction::Pass);
    meter.finish()
}

#[test]
fn a_json_response() {
    let l = json(&response("completed", &message("completed", TEXT), USAGE));
    assert_eq!(
        l,
        Learned {
            usage: Some(the_usage()),
            first_token_ms: None,
            completion_estimate: Default::default(),
            ..completed()
        }
    );
    // Incomplete is an answer; failed, queued and an error body are not.
    let incomplete = response("incomplete", &message("incomplete", "Hello"), USAGE);
    assert!(json(&incomplete).complete);
    for status in ["failed", "queued", "in_progress"] {
        assert!(!json(&response(status, "", "null")).complete, "{status}");
    }
    let error = r#"{"error":{"message":"Invalid 'input'.","type":"invalid_request_error","param":"input","code":null}}"#;
    let l = json(error);
    assert!(!l.complete && l.usage.is_none());
}

#[test]
fn a_json_response_without_usage_is_estimated_from_its_output() {
    let output = [
        r#"{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Thinking."}],"content":[{"type":"reasoning_text","text":"Hello"}]}"#.to_string(),
        message("completed", TEXT),
        r#"{"id":"m2","type":"message","role":"assistant","content":[{"type":"refusal","refusal":"Hello"}]}"#.into(),
        r#"{"id":"fc_1","type":"function_call","call_id":"c","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"}"#.into(),
        r#"{"id":"ct_1","type":"custom_tool_call","call_id":"c","name":"get_weather","input":"Hello"}"#.into(),
        // Items of other shapes are skipped, not the body.
        r#"{"id":"ws_1","type":"web_search_call","status":"completed","action":{"type":"search","query":"x"}}"#.into(),
        r#"{"type":"message","content":{"odd":true}}"#.into(),
    ];
    let l = json(&response("completed", &output.join(","), "null"));
    let o200k = Encoding::O200kBase;
    // Hello (reasoning) + the text (9) + Hello (refusal) + get_weather (2) + arguments (5) +
    // get_weather + Hello.
    assert_eq!(o200k.count_uncached("{\"city\":\"Paris\"}"), 5);
    assert_eq!(l.completion_estimate.tokens, 1 + 9 + 1 + 2 + 5 + 2 + 1);
    assert_eq!(l.usage, None);
    assert!(l.complete);
    assert_eq!(l.model.as_deref(), Some(MODEL));
}

#[test]
fn usage_beyond_u64_saturates() {
    let usage = r#"{"input_tokens":1e30,"input_tokens_details":{"cached_tokens":12.0},"output_tokens":-1,"total_tokens":18446744073709551616}"#;
    let u = json(&response("completed", "", usage)).usage.unwrap();
    assert_eq!(u.prompt_tokens, Some(u64::MAX));
    assert_eq!(u.cached(), 12);
    assert_eq!(u.completion_tokens, Some(0));
    assert_eq!(u.total_tokens, Some(u64::MAX));
    let (_, l) = run(
        stream(Some("response.completed"), usage).as_bytes(),
        &[],
        false,
    );
    assert_eq!(l.usage.unwrap().prompt_tokens, Some(u64::MAX));
}

#[test]
fn the_usage_reaches_the_record_as_chat_usage_does() {
    let r = crate::record::Record {
        endpoint: Some("responses"),
        status: 200,
        learned: json(&response("completed", "", USAGE)),
        ..Default::default()
    };
    let t = r.tokens();
    assert_eq!(
        (
            t.prompt,
            t.completion,
            t.total,
            t.cached,
            t.reasoning,
            t.estimated
        ),
        (19, 9, 28, 4, 2, false)
    );
}
