use super::*;
use crate::meter::{Learned, Usage};
use crate::record::Record;
use serde_json::{json, Value};

fn export(extra: Value) -> Export {
    let mut v = json!({"cluster": "sink", "batch_size": 3, "flush_interval_ms": 100,
                       "max_buffered_events": 7, "max_retries": 2});
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    Export::parse(serde_json::from_value(v).expect("shape")).expect("valid")
}

fn record(n: u64) -> Record {
    Record {
        consumer: Some("team-a".into()),
        request_model: Some("gpt-4o".into()),
        upstream_model: Some("gpt-4o".into()),
        provider: Some("openai".into()),
        endpoint: Some("chat.completions"),
        status: 200,
        duration_ms: 12,
        cost: Some(45_000_000),
        learned: Learned {
            usage: Some(Usage {
                prompt_tokens: Some(n),
                completion_tokens: Some(5),
                total_tokens: Some(n.saturating_add(5)),
                ..Default::default()
            }),
            model: Some("gpt-4o-2024-08-06".into()),
            complete: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn event(n: u64) -> Event {
    Event::new(&record(n), Some(format!("req-{n}")), 1_000_000_000 * n, 1)
}

#[test]
fn config_defaults_and_refusals() {
    let e = Export::parse(serde_json::from_value(json!({"cluster": "otel"})).expect("shape"))
        .expect("valid");
    assert_eq!(
        (e.format, e.path.as_str(), e.authority.as_str()),
        (Format::Otlp, "/v1/logs", "otel")
    );
    assert_eq!(
        (e.batch_size, e.flush_interval_ms, e.max_retries),
        (100, 1000, 3)
    );
    let j = export(json!({"format": "json", "headers": {"Authorization": "Bearer x"}}));
    assert_eq!(j.path, "/");
    assert_eq!(j.headers, vec![("authorization".into(), "Bearer x".into())]);
    for (bad, field) in [
        (json!({"cluster": " "}), "usage_export.cluster"),
        (
            json!({"cluster": "c", "batch_size": 0}),
            "usage_export.batch_size",
        ),
        (
            json!({"cluster": "c", "batch_size": 10, "max_buffered_events": 5}),
            "usage_export.max_buffered_events",
        ),
        (
            json!({"cluster": "c", "path": "v1/logs"}),
            "usage_export.path",
        ),
        (
            json!({"cluster": "c", "headers": {"content-type": "x"}}),
            "usage_export.headers.content-type",
        ),
        (
            json!({"cluster": "c", "timeout_ms": 0}),
            "usage_export.timeout_ms",
        ),
    ] {
        let e = Export::parse(serde_json::from_value(bad).expect("shape")).expect_err("bad");
        assert_eq!(e.field, field);
    }
    assert!(serde_json::from_value::<RawExport>(json!({"cluster": "c", "format": "xml"})).is_err());
}

#[test]
fn events_carry_everything_in_both_encodings() {
    let mut r = record(8);
    r.stream = true;
    r.ttft_ms = Some(3);
    r.journal = Some(crate::failover::Journal(vec![
        ("primary".into(), "503".into()),
        ("backup".into(), "200".into()),
    ]));
    let e = Event::new(
        &r,
        Some("abc".into()),
        1_700_000_000_123_456_789,
        1_700_000_001_000_000_000,
    );
    let x = exporter(export(json!({"format": "json"})), None);
    let v: Value = serde_json::from_slice(&encode(&x, std::slice::from_ref(&e))).expect("json");
    assert_eq!(
        v,
        json!([{"time_unix_ms": 1_700_000_000_123u64, "request_id": "abc", "consumer": "team-a",
                "request_model": "gpt-4o", "upstream_model": "gpt-4o",
                "response_model": "gpt-4o-2024-08-06", "provider": "openai",
                "endpoint": "chat.completions", "operation": "chat", "stream": true,
                "status": 200, "outcome": "ok", "prompt_tokens": 8, "completion_tokens": 5,
                "total_tokens": 13, "cached_tokens": 0, "cache_write_tokens": 0,
                "reasoning_tokens": 0, "usage_estimated": false, "cost_usd": 0.000045,
                "duration_ms": 12, "ttft_ms": 3, "attempts": 2, "failover": "primary:503"}])
    );
    let x = exporter(export(json!({})), Some("node-1".into()));
    let v: Value = serde_json::from_slice(&encode(&x, &[e])).expect("json");
    let rl = &v["resourceLogs"][0];
    assert_eq!(
        rl["resource"]["attributes"][2],
        json!({"key": "service.instance.id", "value": {"stringValue": "node-1"}})
    );
    let rec = &rl["scopeLogs"][0]["logRecords"][0];
    assert_eq!(rec["timeUnixNano"], "1700000000123456789");
    assert_eq!(rec["eventName"], EVENT_NAME);
    let attr = |k: &str| {
        rec["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["key"] == k))
            .map(|x| x["value"].clone())
    };
    assert_eq!(
        attr("gen_ai.usage.input_tokens"),
        Some(json!({"intValue": "8"}))
    );
    assert_eq!(
        attr("llm_gateway.cost_usd"),
        Some(json!({"doubleValue": 0.000045}))
    );
    assert_eq!(attr("llm_gateway.stream"), Some(json!({"boolValue": true})));
    assert_eq!(
        attr("llm_gateway.failover"),
        Some(json!({"stringValue": "primary:503"}))
    );
    // A request the gateway refused has no tokens and no cost.
    let refused = Record {
        local_outcome: Some("rate_limited"),
        status: 429,
        endpoint: Some("chat.completions"),
        ..Default::default()
    };
    let e = Event::new(&refused, None, 0, 0);
    assert!(e
        .fields
        .iter()
        .any(|(k, _, v)| *k == "gen_ai.usage.input_tokens" && *v == Val::Int(0)));
    assert!(!e
        .fields
        .iter()
        .any(|(k, _, _)| *k == "llm_gateway.cost_usd"));
}

#[test]
fn batches_by_size_and_age() {
    let mut x = exporter(export(json!({"format": "json"})), None);
    for n in 0..2 {
        assert!(push(&mut x, &event(n), 1000));
    }
    assert!(x.take_due(1050, false).is_empty(), "neither full nor old");
    let due = x.take_due(1100, false);
    assert_eq!(due.iter().map(|b| b.events).collect::<Vec<_>>(), [2]);
    // The 2 taken are held until their post is answered: 5 more fill the bound of 7.
    for n in 0..5 {
        assert!(push(&mut x, &event(n), 2000));
    }
    assert_eq!(x.held(), 7);
    assert!(!push(&mut x, &event(9), 2000), "the buffer is bounded");
    let due2 = x.take_due(2000, false);
    assert_eq!(due2.iter().map(|b| b.events).collect::<Vec<_>>(), [3]);
    let rest = x.take_due(2100, false);
    assert_eq!(rest.iter().map(|b| b.events).collect::<Vec<_>>(), [2]);
    let v: Value = serde_json::from_slice(&rest[0].body).expect("json");
    assert_eq!(v[1]["request_id"], "req-4");
}

#[test]
fn failed_posts_retry_with_backoff_then_drop() {
    let mut x = exporter(export(json!({})), None);
    for n in 0..3 {
        push(&mut x, &event(n), 0);
    }
    let mut b = x.take_due(0, false);
    assert_eq!(b.len(), 1);
    x.sent(7, b.remove(0));
    assert_eq!(x.answered(8, true, 0), None, "unknown token");
    assert_eq!(x.answered(7, false, 10), Some(Done::Retrying));
    assert!(
        x.take_due(100, false).is_empty(),
        "back-off: 100 ms after 10"
    );
    let mut b = x.take_due(110, false);
    assert_eq!(b.len(), 1);
    x.sent(9, b.remove(0));
    assert_eq!(x.answered(9, false, 110), Some(Done::Retrying));
    assert!(x.take_due(309, false).is_empty(), "back-off doubles");
    let b = x.take_due(310, false).remove(0);
    assert_eq!(b.failures, 2);
    assert_eq!(x.failed(b, 310), Done::Dropped(3), "after max_retries (2)");
    assert_eq!(x.held(), 0);
    // A delivered batch frees its events.
    push(&mut x, &event(1), 400);
    let b = x.take_due(400, true).remove(0);
    x.sent(1, b);
    assert_eq!(x.answered(1, true, 401), Some(Done::Delivered(1)));
    assert_eq!(x.held(), 0);
}

#[test]
fn in_flight_posts_are_bounded() {
    let mut x = exporter(export(json!({"max_buffered_events": 100})), None);
    for n in 0..30 {
        push(&mut x, &event(n), 0);
    }
    let due = x.take_due(0, false);
    assert_eq!(due.len(), MAX_IN_FLIGHT);
    for (i, b) in due.into_iter().enumerate() {
        x.sent(i as u32, b);
    }
    assert!(x.take_due(1000, false).is_empty());
    assert_eq!(x.answered(0, true, 1000), Some(Done::Delivered(3)));
    assert_eq!(x.take_due(1000, false).len(), 1);
    // Draining ignores the bound.
    assert_eq!(x.take_due(1000, true).len(), 5);
}

#[test]
fn the_largest_figures_are_exported_in_range() {
    let mut r = record(u64::MAX);
    r.learned.usage = Some(Usage {
        prompt_tokens: Some(u64::MAX),
        completion_tokens: Some(u64::MAX),
        total_tokens: None,
        ..Default::default()
    });
    r.cost = Some(u64::MAX);
    let e = Event::new(&r, None, u64::MAX, u64::MAX);
    let x = exporter(export(json!({"format": "json"})), None);
    let v: Value = serde_json::from_slice(&encode(&x, std::slice::from_ref(&e))).expect("json");
    assert_eq!(v[0]["prompt_tokens"], u64::MAX);
    assert_eq!(v[0]["total_tokens"], u64::MAX);
    // OTLP's intValue is an int64: the largest it holds, never a value the collector
    // refuses (which would drop the whole batch).
    let x = exporter(export(json!({})), None);
    let v: Value = serde_json::from_slice(&encode(&x, &[e])).expect("json");
    let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(rec["timeUnixNano"], u64::MAX.to_string(), "fixed64");
    let attr = |k: &str| {
        rec["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["key"] == k))
            .map(|x| x["value"].clone())
    };
    for k in [
        "gen_ai.usage.input_tokens",
        "llm_gateway.usage.total_tokens",
    ] {
        assert_eq!(
            attr(k),
            Some(json!({"intValue": i64::MAX.to_string()})),
            "{k}"
        );
    }
    assert_eq!(
        attr("llm_gateway.cost_usd"),
        Some(json!({"doubleValue": crate::cost::dollars(u64::MAX)}))
    );
}

#[test]
fn a_post_is_sized_by_its_events_not_by_batch_size() {
    let cfg = export(json!({"batch_size": MAX_BATCH_SIZE,
                            "max_buffered_events": MAX_BUFFERED_EVENTS}));
    let mut x = exporter(cfg, None);
    assert!(push(&mut x, &event(1), 0));
    let b = x.take_due(10_000, false).remove(0);
    assert_eq!(b.events, 1);
    // Once 2048 × batch_size bytes up front (2 GB at a batch_size of 1000000).
    assert_eq!(b.body.capacity(), b.body.len());
    let v: Value = serde_json::from_slice(&b.body).expect("json");
    assert_eq!(
        v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["eventName"],
        EVENT_NAME
    );
    for n in 0..MAX_BATCH_SIZE as u64 {
        push(&mut x, &event(n), 20_000);
    }
    let full = x.take_due(20_000, false).remove(0);
    assert_eq!(full.events, MAX_BATCH_SIZE);
    assert_eq!(full.body.capacity(), full.body.len());
}

#[test]
fn a_budget_alert_is_an_event_of_its_own_in_both_formats() {
    use crate::limits::{BudgetWindow, Crossing};
    let c = Crossing {
        scope: "team:eng".into(),
        window: BudgetWindow::Month,
        threshold_ppm: 800_000,
        spent: 400_500_000_000_000,
        limit: 500_000_000_000_000,
        resets_ns: 1_798_761_600_000_000_000,
    };
    let mut r = record(8);
    r.team = Some("eng".into());
    let e = Event::budget_alert(&c, &r, 1_700_000_000_000_000_000);
    let x = exporter(export(json!({"format": "json"})), None);
    let v: Value = serde_json::from_slice(&encode(&x, std::slice::from_ref(&e))).expect("json");
    assert_eq!(
        v,
        json!([{"time_unix_ms": 1_700_000_000_000u64, "event": "budget_alert",
                "budget_scope": "team:eng", "budget_scope_kind": "team", "budget_scope_name": "eng",
                "budget_window": "month", "threshold_percent": 80, "spent_usd": 400.5,
                "limit_usd": 500.0, "resets_unix_ms": 1_798_761_600_000u64,
                "consumer": "team-a", "team": "eng"}])
    );
    let x = exporter(export(json!({})), None);
    let v: Value = serde_json::from_slice(&encode(&x, &[e])).expect("json");
    let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(rec["eventName"], "llm_gateway.budget_alert");
    assert_eq!(
        rec["attributes"][4],
        json!({"key": "llm_gateway.budget.threshold_percent", "value": {"intValue": "80"}})
    );
}
