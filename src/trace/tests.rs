use super::*;

/// A well-spread 64-bit value of `i` (test ids that look random).
pub(crate) fn spread(i: u64) -> u64 {
    mix(i.wrapping_mul(0x2545_f491_4f6c_dd1d))
}

#[test]
fn traceparent_is_read_as_w3c_trace_context_says() {
    let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (t, p, f) = parse_traceparent(ok).unwrap();
    assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(p), "00f067aa0ba902b7");
    assert_eq!(f, 1);
    // A later version may carry more fields after a dash; version 00 may not.
    assert!(parse_traceparent(&format!("cc{}-what-the-future-holds", &ok[2..])).is_some());
    assert!(parse_traceparent(&format!("cc{}x", &ok[2..])).is_none());
    for bad in [
        "",
        &ok[..54],
        &format!("{ok}-"),
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "00-4bf92f3577b34da6a3ce929d0e0é736-00f067aa0ba902b7-01",
    ] {
        assert!(parse_traceparent(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn attempt_spans_are_distinct_children_that_both_filters_name_alike() {
    let mut bits = [7u64, 1, 2].into_iter();
    let ctx = Context::start(None, None, 1.0, &mut || bits.next().unwrap_or(0));
    let ids: Vec<SpanId> = (1..=8).map(|n| ctx.attempt_span(n)).collect();
    for (i, a) in ids.iter().enumerate() {
        assert_ne!(*a, ctx.span_id);
        assert_ne!(*a, [0; 8]);
        assert!(!ids[..i].contains(a));
    }
    // What the upstream filter decodes from filter state names the same spans.
    let handed = Context::decode(ctx.encode().as_bytes()).unwrap();
    assert_eq!(handed.attempt_span(3), ctx.attempt_span(3));
    assert_eq!(
        handed.traceparent(&handed.attempt_span(2)),
        ctx.traceparent(&ctx.attempt_span(2))
    );
}

#[test]
fn sampling_reads_the_trace_id() {
    let all = (0..10_000u64).filter(|i| {
        let mut b = [1, spread(*i), spread(i + 1)].into_iter();
        Context::start(None, None, 0.1, &mut || b.next().unwrap_or(0)).sampled
    });
    let n = all.count();
    assert!((850..1150).contains(&n), "{n} of 10000 at 0.1");
    let mut b = [1u64, 2, 3].into_iter();
    assert!(Context::start(None, None, 1.0, &mut || b.next().unwrap_or(0)).sampled);
    let mut b = [1u64, 2, 3].into_iter();
    assert!(!Context::start(None, None, 0.0, &mut || b.next().unwrap_or(0)).sampled);
}

#[test]
fn a_tracestate_is_kept_only_when_it_can_be_passed_on() {
    let tp = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let mut z = || 5u64;
    let long = "a=".to_string() + &"b".repeat(MAX_TRACESTATE_BYTES);
    assert_eq!(
        Context::start(tp, Some(" k=v,x=y "), 1.0, &mut z)
            .tracestate
            .as_deref(),
        Some("k=v,x=y")
    );
    assert_eq!(
        Context::start(tp, Some(&long), 1.0, &mut z).tracestate,
        None
    );
    assert_eq!(
        Context::start(tp, Some("k=v\u{1}"), 1.0, &mut z).tracestate,
        None
    );
}

#[test]
fn content_is_cut_on_a_character_boundary() {
    assert_eq!(span::cut_to("héllo", 2), "h");
    assert_eq!(span::cut_to("héllo", 3), "hé");
    let m = span::input_messages(br#"{"messages":[{"role":"user","content":[{"type":"text","text":"ab"},{"type":"image_url"}]}]}"#, 100).unwrap();
    assert_eq!(
        m,
        r#"[{"parts":[{"content":"ab","type":"text"}],"role":"user"}]"#
    );
    assert!(span::input_messages(b"{}", 10).is_none());
}

#[test]
fn strings_from_the_wire_are_bounded_in_a_span() {
    let mut b = [1u64, 2, 3].into_iter();
    let ctx = Context::start(None, None, 1.0, &mut || b.next().unwrap_or(0));
    let st = span::State::new(ctx, 1);
    let huge = "m".repeat(10_000);
    let r = crate::record::Record {
        request_model: Some(huge.clone()),
        upstream_model: Some(huge.clone()),
        endpoint: Some("chat.completions"),
        status: 200,
        ..Default::default()
    };
    let a = span::Attempt {
        n: 1,
        provider: "openai".into(),
        model: Some(huge),
        outcome: "200".into(),
        start_ns: 1,
        end_ns: 2,
    };
    for s in span::spans(&st, &r, 2, &[a], None) {
        let encoded = s.encode();
        assert!(encoded.len() < 4096, "{} bytes", encoded.len());
        assert!(s.name.len() <= 4 + 1 + span::MAX_ATTR_BYTES);
    }
}
