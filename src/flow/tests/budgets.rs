//! Teams, access lists and dollar budgets through the flow: the priced reservation, the 429
//! `insufficient_quota` a client's SDK reads, refunds and alerts at the end, team scopes, the
//! unpriced rule, and the global budgets' descriptors.

use prost::Message;
use serde_json::{json, Value};
use sha2::Digest;

use super::support::*;
use crate::flow::Step;
use crate::metrics::stat_name;
use crate::names::metric;
use crate::rls::RateLimitRequest;

/// `config()` with gpt-4o-mini at $0.001 a token in and out, `limits`, and `extra` sections.
fn priced(limits: Value, extra: Value) -> Value {
    let mut c = config_with(json!({
        "limits": limits,
        "pricing": {"models": {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}},
    }));
    if let (Some(o), Value::Object(e)) = (c.as_object_mut(), extra) {
        o.extend(e);
    }
    c
}

/// 8 prompt tokens and at most 10 out: $0.018 reserved.
fn ten() -> Value {
    let mut b = hello("gpt-4o-mini");
    b["max_tokens"] = json!(10);
    b
}

fn spent(scope: (&str, &str), window: &str) -> String {
    stat_name(metric::BUDGET_SPENT, &[scope, (metric::TAG_WINDOW, window)])
}

fn alerts(scope: (&str, &str), window: &str, threshold: &str) -> String {
    stat_name(
        metric::BUDGET_ALERTS,
        &[
            scope,
            (metric::TAG_WINDOW, window),
            (metric::TAG_THRESHOLD, threshold),
        ],
    )
}

const TEAM_A: (&str, &str) = (metric::TAG_CONSUMER, "team-a");

#[test]
fn a_budget_reserves_the_priced_maximum_refuses_what_does_not_fit_and_settles_to_the_cost() {
    let mut h = host(&chat());
    let cfg = priced(
        json!({"default": {"budget": {"day": 0.05}}, "max_tracked": 16}),
        json!({}),
    );
    let vm = vm(&h, &cfg);
    // Admitted: $0.018 reserved of $0.05; it costs 8 + 5 tokens, $0.013.
    let mut first = vm.exchange(1).unwrap();
    assert_eq!(send(&mut first, &mut h, &ten()), Step::Continue);
    answer(&mut first, &mut h, 200, &JSON, &completion("Hi!"));
    assert_eq!(
        h.response_header("x-llm-budget-remaining-usd").as_deref(),
        Some("0.032000")
    );
    first.finish(&mut h);
    assert_eq!(h.metric_value(&spent(TEAM_A, "day")), 260_000);
    assert_eq!(h.prop("llm.cost_usd").as_deref(), Some("0.013"));

    // Two more in flight: $0.013 + 2 × $0.018 = $0.049; a third does not fit.
    let mut h2 = next(&h, &chat());
    let mut second = vm.exchange(2).unwrap();
    assert_eq!(send(&mut second, &mut h2, &ten()), Step::Continue);
    let mut h3 = next(&h, &chat());
    let mut third = vm.exchange(3).unwrap();
    assert_eq!(send(&mut third, &mut h3, &ten()), Step::Continue);
    let mut h4 = next(&h, &chat());
    let mut fourth = vm.exchange(4).unwrap();
    let r = reply(send(&mut fourth, &mut h4, &ten()));
    assert_eq!(r.status, 429);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "Budget exceeded for team-a on USD per day: Limit $0.05, \
                         Remaining $0.001, Requested $0.018. The budget resets at 2026-01-02 \
                         00:00 UTC (in 24h0m0s).",
                         "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}})
    );
    assert_eq!(header(&r, "retry-after"), Some("86400"));
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    assert_eq!(header(&r, "x-llm-budget-remaining-usd"), Some("0.001000"));
    assert_eq!(h4.request_header("x-llm-gateway-cluster"), None);
    fourth.finish(&mut h4);
    assert_eq!(
        counted(&h4),
        vec![requests_metric(
            "gpt-4o-mini",
            "none",
            "team-a",
            "over_budget"
        )]
    );
    let rejected = stat_name(
        metric::RATELIMIT_REJECTIONS,
        &[TEAM_A, (metric::TAG_REASON, "budget")],
    );
    assert_eq!(h4.metric_value(&rejected), 1);

    // The second fails at the provider: its reservation comes back whole. The third costs
    // $0.013 and crosses 50 %: one alert.
    answer(
        &mut second,
        &mut h2,
        500,
        &JSON,
        br#"{"error":{"message":"boom"}}"#,
    );
    second.finish(&mut h2);
    answer(&mut third, &mut h3, 200, &JSON, &completion("Hi!"));
    third.finish(&mut h3);
    assert_eq!(h3.metric_value(&spent(TEAM_A, "day")), 520_000);
    assert_eq!(h3.metric_value(&alerts(TEAM_A, "day", "50")), 1);
    assert_eq!(h2.metric_value(&alerts(TEAM_A, "day", "50")), 0);
    // $0.026 spent, nothing reserved: one fits again, with $0.006 left after it.
    let mut h5 = next(&h, &chat());
    let mut fifth = vm.exchange(5).unwrap();
    assert_eq!(send(&mut fifth, &mut h5, &ten()), Step::Continue);
    answer(&mut fifth, &mut h5, 200, &JSON, &completion("Hi!"));
    assert_eq!(
        h5.response_header("x-llm-budget-remaining-usd").as_deref(),
        Some("0.006000")
    );
}

#[test]
fn the_next_day_starts_at_zero() {
    let mut h = host(&chat());
    let cfg = priced(
        json!({"default": {"budget": {"day": 0.02}}, "max_tracked": 16}),
        json!({}),
    );
    let vm = vm(&h, &cfg);
    run(&vm, &mut h, &ten(), &completion("Hi!"));
    let mut h2 = next(&h, &chat());
    let mut ex = vm.exchange(2).unwrap();
    assert_eq!(reply(send(&mut ex, &mut h2, &ten())).status, 429);
    ex.finish(&mut h2);
    let mut h3 = next(&h, &chat());
    h3.now_ns.set(h.now_ns.get() + 86_400 * 1_000_000_000);
    let mut ex = vm.exchange(3).unwrap();
    assert_eq!(send(&mut ex, &mut h3, &ten()), Step::Continue);
}

#[test]
fn a_team_budget_is_shared_by_its_members_and_names_the_team() {
    let mut cfg = priced(
        json!({"teams": {"eng": {"budget": {"month": 0.02}}}, "max_tracked": 16}),
        json!({}),
    );
    cfg["consumers"][0]["team"] = json!("eng");
    cfg["consumers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "team-b", "key_sha256": hex::encode(sha2::Sha256::digest("sk-b")), "team": "eng"}));
    let mut h = host(&chat());
    let vm = vm(&h, &cfg);
    run(&vm, &mut h, &ten(), &completion("Hi!"));
    assert_eq!(h.prop("llm.team").as_deref(), Some("eng"));
    let with_team = stat_name(
        metric::REQUESTS,
        &[
            (metric::TAG_MODEL, "gpt-4o-mini"),
            (metric::TAG_PROVIDER, "openai"),
            (metric::TAG_CONSUMER, "team-a"),
            (metric::TAG_TEAM, "eng"),
            (metric::TAG_OUTCOME, "ok"),
        ],
    );
    assert_eq!(h.metric_value(&with_team), 1);
    assert_eq!(
        h.metric_value(&spent((metric::TAG_TEAM, "eng"), "month")),
        650_000
    );
    // team-b: the team's $0.007 left does not hold its $0.018.
    let b_headers = post("/v1/chat/completions", &[("authorization", "Bearer sk-b")]);
    let mut hb = next(&h, &b_headers);
    hb.request_headers
        .retain(|(k, v)| k != "authorization" || v == "Bearer sk-b");
    let mut ex = vm.exchange(2).unwrap();
    let r = reply(send(&mut ex, &mut hb, &ten()));
    assert_eq!(r.status, 429);
    let msg = parsed(&r.body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("Budget exceeded for team:eng on USD per month"),
        "{msg}"
    );
}

#[test]
fn an_access_list_refuses_other_models_as_not_found_and_counts_them() {
    let cfg = config_with(json!({"access": {"default": {"allow": ["gpt-4o*"]}}}));
    let mut h = host(&chat());
    let vm = vm(&h, &cfg);
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send(&mut ex, &mut h, &hello("fast")));
    assert_eq!(r.status, 404);
    assert_eq!(
        parsed(&r.body),
        json!({"error": {"message": "The model `fast` does not exist or you do not have access to it.",
                         "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
    );
    assert_eq!(h.request_header("x-llm-gateway-cluster"), None);
    ex.finish(&mut h);
    assert_eq!(
        counted(&h),
        vec![requests_metric("fast", "none", "team-a", "model_denied")]
    );
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("model_denied"));
    // An allowed one goes.
    let mut h2 = next(&h, &chat());
    let mut ex = vm.exchange(2).unwrap();
    assert_eq!(
        send(&mut ex, &mut h2, &hello("gpt-4o-mini")),
        Step::Continue
    );
}

#[test]
fn an_unpriced_model_is_refused_under_a_budget_or_let_through_uncharged() {
    let limits = json!({"default": {"budget": {"day": 1}}, "max_tracked": 16});
    let body = hello("claude-sonnet-4-5-unpriced");
    let cfg = config_with(json!({"limits": limits.clone(), "pricing": {"defaults": false}}));
    let mut h = host(&chat());
    let vm1 = vm(&h, &cfg);
    let mut ex = vm1.exchange(1).unwrap();
    let r = reply(send(&mut ex, &mut h, &body));
    assert_eq!(r.status, 403);
    assert_eq!(parsed(&r.body)["error"]["code"], "model_not_priced");
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.outcome").as_deref(), Some("model_not_priced"));

    let mut limits = limits;
    limits["budgets"] = json!({"unpriced": "allow"});
    let cfg = config_with(json!({"limits": limits, "pricing": {"defaults": false}}));
    let mut h = host(&chat());
    let vm2 = vm(&h, &cfg);
    let mut ex = vm2.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &body), Step::Continue);
    ex.finish(&mut h);
    let unpriced = stat_name(metric::BUDGET_UNPRICED, &[TEAM_A]);
    assert_eq!(h.metric_value(&unpriced), 1);
}

#[test]
fn global_budgets_send_the_calendar_periods_and_the_prompt_cost_then_report_the_rest() {
    let mut cfg = priced(
        json!({"global": {"cluster": "ratelimit", "budgets": ["day", "month"]}}),
        json!({}),
    );
    cfg["consumers"][0]["team"] = json!("eng");
    let mut h = host(&chat());
    let vm = vm(&h, &cfg);
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &ten()), Step::Pause);
    let call = h.callouts.last().unwrap().clone();
    let sent = RateLimitRequest::decode(call.body.as_slice()).unwrap();
    type Descriptor = (Vec<(String, String)>, Option<u64>);
    let budget: Vec<Descriptor> = sent
        .descriptors
        .iter()
        .filter(|d| d.entries.iter().any(|e| e.key.starts_with("budget_")))
        .map(|d| {
            let e = d.entries.iter().map(|e| (e.key.clone(), e.value.clone()));
            (e.collect(), d.hits_addend)
        })
        .collect();
    let pair = |a: &str, b: &str, c: &str, d: &str| {
        (
            vec![
                (a.to_string(), b.to_string()),
                (c.to_string(), d.to_string()),
            ],
            Some(8000),
        )
    };
    // The prompt, 8 tokens at $0.001, in micro-dollars.
    assert_eq!(
        budget,
        vec![
            pair("consumer", "team-a", "budget_day", "2026-01-01"),
            pair("consumer", "team-a", "budget_month", "2026-01"),
            pair("team", "eng", "budget_day", "2026-01-01"),
            pair("team", "eng", "budget_month", "2026-01"),
        ]
    );
}
