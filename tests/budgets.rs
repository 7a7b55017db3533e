//! Teams, model access lists and dollar budgets in real Envoy with 2 workers: a burst never
//! overshoots a budget and is refunded what it did not use, a team budget stops every member
//! and no one else, alert thresholds fire once each (metric and usage event), access lists
//! refuse and `/v1/models` lists exactly what is allowed, and the official openai SDK sees a
//! budget refusal as `RateLimitError` (`insufficient_quota`) without retrying it.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::*;

/// $1000 per million tokens in and out: every token costs exactly $0.001 (one "milli").
const PRICE: f64 = 1000.0;

/// Seconds that put the budgets' clock at 2027-06-15 12:00 UTC, far from any day or month
/// boundary whenever the test runs.
fn mid_month_skew() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    1_813_060_800 - now
}

fn config(limits: Value, extra: Value) -> Value {
    let mut limits = limits;
    limits["budgets"]["clock_skew_s"] = mid_month_skew().into();
    let mut c = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini", "gpt-4o", "o3"]},
        "consumers": [
            {"name": "alice", "team": "eng"},
            {"name": "bob", "team": "eng"},
            {"name": "carol", "team": "ops"},
        ],
        "consumer_header": "x-consumer",
        "pricing": {"models": {
            "gpt-4o-mini": {"input": PRICE, "output": PRICE},
            "gpt-4o": {"input": PRICE, "output": PRICE},
        }},
        "limits": limits,
    });
    if let (Some(a), Value::Object(b)) = (c.as_object_mut(), extra) {
        a.extend(b);
    }
    c
}

fn gateway(limits: Value) -> (Fake, Gateway) {
    let fake = Fake::start(None);
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(config(limits, json!({}))),
            ..Options::default()
        },
    );
    (fake, gw)
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 10,
           "messages": [{"role": "user", "content": "Hello"}]})
}

fn ask(gw: &Gateway, who: &str, extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![
        ("content-type", "application/json"),
        ("x-consumer", who),
        ("x-fake-completion-tokens", "2"),
    ];
    h.extend_from_slice(extra);
    post(
        &gw.url("/v1/chat/completions"),
        &h,
        hello("gpt-4o-mini").to_string().as_bytes(),
    )
}

/// `n` requests of `who` at once, each on its own connection, the provider slow enough that
/// all are in flight together on both workers.
fn burst(gw: &Gateway, n: usize, who: &str) -> Vec<Resp> {
    let url = gw.url("/v1/chat/completions");
    let go = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, who, go) = (url.clone(), who.to_string(), go.clone());
            std::thread::spawn(move || {
                let h = [
                    ("content-type", "application/json"),
                    ("x-consumer", who.as_str()),
                    ("x-fake-completion-tokens", "2"),
                    ("x-fake-delay-ms", "400"),
                ];
                go.wait();
                post(&url, &h, hello("gpt-4o-mini").to_string().as_bytes())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Thousandths of a dollar in an `x-llm-budget-remaining-usd` header.
fn remaining_milli(r: &Resp) -> u64 {
    let v: f64 = r
        .header("x-llm-budget-remaining-usd")
        .unwrap_or_else(|| panic!("no budget header in {:?}", r.headers))
        .parse()
        .unwrap();
    (v * 1000.0).round() as u64
}

/// Thousandths of a dollar a finished answer cost (its usage at $0.001 a token).
fn cost_milli(r: &Resp) -> u64 {
    r.json()["usage"]["total_tokens"].as_u64().unwrap()
}

/// Wait until the gauge `name` reads `value`.
fn wait_gauge(gw: &Gateway, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.counter(name) != value {
        assert!(
            Instant::now() < deadline,
            "{name} is {} (want {value}):\n{}",
            gw.counter(name),
            gw.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const ALICE_MONTH: &str =
    "wasmcustom.llm_gateway_budget_spent_ppm.consumer=.=alice;.;window=.=month;.;";

#[test]
fn a_burst_never_overshoots_a_dollar_budget_and_gets_back_what_it_did_not_use() {
    let (_fake, gw) = gateway(json!({"consumers": {"alice": {"budget": {"month": 0.2}}}}));
    let budget = 200; // milli-dollars
                      // One request alone: the header says what its reservation left, so its reservation is
                      // known (prompt + max_tokens 10 at $0.001 a token); it then cost prompt + 2.
    let first = ask(&gw, "alice", &[]);
    assert_eq!(first.status, 200, "{}", first.text());
    let reservation = budget - remaining_milli(&first);
    let cost = cost_milli(&first);
    assert_eq!(reservation, cost + 8, "reserved max_tokens 10, used 2");
    let mut spent = cost;
    wait_gauge(&gw, ALICE_MONTH, spent * 1_000_000 / budget);

    // Twice: a burst admits exactly what fits beside the reservations in flight; what each
    // admitted request did not use comes back, so the second burst sees the refunds.
    for round in 0..2 {
        let fits = (budget - spent) / reservation;
        assert!(fits >= 2, "round {round}: the test needs room for a burst");
        let rs = burst(&gw, 30, "alice");
        let ok: Vec<&Resp> = rs.iter().filter(|r| r.status == 200).collect();
        let refused: Vec<&Resp> = rs.iter().filter(|r| r.status == 429).collect();
        assert_eq!(ok.len() + refused.len(), 30, "unexpected statuses");
        assert_eq!(ok.len() as u64, fits, "round {round}: exactly what fits");
        for r in &ok {
            assert_eq!(cost_milli(r), cost);
        }
        let e = refused[0].json();
        assert_eq!(e["error"]["type"], "insufficient_quota");
        assert_eq!(e["error"]["code"], "insufficient_quota");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("Budget exceeded for alice on USD per month: Limit $0.20, Remaining $"),
            "{msg}"
        );
        assert!(
            msg.contains("The budget resets at 2027-07-01 00:00 UTC"),
            "{msg}"
        );
        assert_eq!(refused[0].header("x-should-retry"), Some("false"));
        let retry: u64 = refused[0].header("retry-after").unwrap().parse().unwrap();
        assert!(retry > 14 * 86_400, "retry-after {retry}");
        assert!(refused[0].header("x-fake-received-model").is_none());
        spent += fits * cost;
        wait_gauge(&gw, ALICE_MONTH, spent * 1_000_000 / budget);
    }
    // Refusals are counted as such, and cost nothing.
    let refused = gw.counter(
        "wasmcustom.llm_gateway_ratelimit_rejections_total.consumer=.=alice;.;reason=.=budget;.;",
    );
    assert_eq!(refused, 60 - (spent - cost) / cost);
    let log = gw.access_log(61);
    let over: Vec<&Value> = log
        .iter()
        .filter(|l| l["outcome"] == "over_budget")
        .collect();
    assert_eq!(over.len() as u64, refused);
    assert!(over
        .iter()
        .all(|l| l["cost_usd"].is_null() || l["cost_usd"] == "-"));
    assert!(log.iter().all(|l| l["team"] == "eng"), "{log:?}");
}

#[test]
fn a_team_budget_stops_every_member_and_no_one_else() {
    let (_fake, gw) = gateway(json!({"teams": {"eng": {"budget": {"day": 0.05}}}}));
    let mut admitted = 0;
    let refusal = loop {
        let r = ask(&gw, "alice", &[]);
        if r.status != 200 {
            break r;
        }
        admitted += 1;
        assert!(admitted < 10, "the team budget never refused");
        // Let it settle before the next.
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(admitted >= 2);
    assert_eq!(refusal.status, 429);
    let msg = refusal.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("Budget exceeded for team:eng on USD per day: Limit $0.05"),
        "{msg}"
    );
    assert!(
        msg.contains("The budget resets at 2027-06-16 00:00 UTC"),
        "{msg}"
    );
    // bob is in eng: stopped too; carol (ops) is untouched.
    let bob = ask(&gw, "bob", &[]);
    assert_eq!(bob.status, 429, "{}", bob.text());
    assert!(bob.text().contains("team:eng"));
    let carol = ask(&gw, "carol", &[]);
    assert_eq!(carol.status, 200, "{}", carol.text());
    assert!(carol.header("x-llm-budget-remaining-usd").is_none());
    // The team is a label of the request metrics, and a field of the access log.
    let stats = gw.stats();
    let with_team = |who: &str, team: &str, outcome: &str| {
        stats
            .lines()
            .filter(|l| l.starts_with("wasmcustom.llm_gateway_requests_total."))
            .filter(|l| {
                l.contains(&format!(
                    "consumer=.={who};.;team=.={team};.;outcome=.={outcome};.;"
                ))
            })
            .filter_map(|l| l.rsplit(": ").next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(with_team("alice", "eng", "ok"), admitted);
    assert_eq!(with_team("alice", "eng", "over_budget"), 1);
    assert_eq!(with_team("bob", "eng", "over_budget"), 1);
    assert_eq!(with_team("carol", "ops", "ok"), 1);
    let log = gw.access_log(admitted as usize + 3);
    let teams: Vec<(&str, &str)> = log
        .iter()
        .map(|l| (l["consumer"].as_str().unwrap(), l["team"].as_str().unwrap()))
        .collect();
    assert!(
        teams.contains(&("carol", "ops")) && teams.contains(&("bob", "eng")),
        "{teams:?}"
    );
}

#[test]
fn alert_thresholds_fire_once_each_as_a_metric_and_a_usage_event() {
    let sink = Collector::start(&[]);
    let fake = Fake::start(None);
    let limits = json!({
        "consumers": {"alice": {"budget": {"month": 0.1}}},
        "budgets": {"alerts": [25, 50, 75]},
    });
    let extra = json!({"usage_export": {"cluster": "usage", "flush_interval_ms": 100}});
    let gw = gateway_with_cluster(&fake, config(limits, extra), 2, "usage", sink.port);
    let mut n = 0;
    while ask(&gw, "alice", &[]).status == 200 {
        n += 1;
        assert!(n < 20, "never refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    // More refusals change nothing.
    for _ in 0..3 {
        assert_eq!(ask(&gw, "alice", &[]).status, 429);
    }
    for t in ["25", "50", "75"] {
        let name = format!(
            "wasmcustom.llm_gateway_budget_alerts_total.consumer=.=alice;.;window=.=month;.;threshold=.={t};.;"
        );
        assert_eq!(gw.counter(&name), 1, "threshold {t}");
    }
    // Every log record posted, parsed by the collector with the official OTLP types, as
    // (eventName, attributes by key).
    let records = |posts: &[Value]| -> Vec<(String, serde_json::Map<String, Value>)> {
        let mut out = Vec::new();
        for p in posts {
            assert!(
                p["error"].is_null(),
                "the collector could not parse a post: {p}"
            );
            for rl in p["otlp"]["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for r in sl["logRecords"].as_array().into_iter().flatten() {
                        let mut attrs = serde_json::Map::new();
                        for a in r["attributes"].as_array().into_iter().flatten() {
                            let v = &a["value"];
                            let v = v
                                .get("stringValue")
                                .or_else(|| v.get("intValue"))
                                .or_else(|| v.get("doubleValue"))
                                .or_else(|| v.get("boolValue"))
                                .cloned()
                                .unwrap_or(Value::Null);
                            attrs.insert(a["key"].as_str().unwrap().to_string(), v);
                        }
                        out.push((r["eventName"].as_str().unwrap_or("").to_string(), attrs));
                    }
                }
            }
        }
        out
    };
    let is_alert = |r: &(String, serde_json::Map<String, Value>)| r.0 == "llm_gateway.budget_alert";
    let posts = sink.wait_for(10, |p| {
        records(p).iter().filter(|r| is_alert(r)).count() >= 3
    });
    let all = records(&posts);
    let alerts: Vec<&serde_json::Map<String, Value>> =
        all.iter().filter(|r| is_alert(r)).map(|r| &r.1).collect();
    let mut thresholds: Vec<String> = alerts
        .iter()
        .map(|a| {
            a["llm_gateway.budget.threshold_percent"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, ["25", "50", "75"], "{alerts:?}");
    for a in &alerts {
        assert_eq!(a["llm_gateway.budget.scope"], "alice");
        assert_eq!(a["llm_gateway.budget.scope_kind"], "consumer");
        assert_eq!(a["llm_gateway.budget.window"], "month");
        assert_eq!(a["llm_gateway.budget.limit_usd"], 0.1);
        assert_eq!(a["llm_gateway.consumer"], "alice");
        assert_eq!(a["llm_gateway.team"], "eng");
        let spent = a["llm_gateway.budget.spent_usd"].as_f64().unwrap();
        let t: f64 = a["llm_gateway.budget.threshold_percent"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(spent >= 0.1 * t / 100.0 - 1e-9, "{a:?}");
    }
    // The usage events of the requests carry the team.
    let usage: Vec<_> = all.iter().filter(|r| r.0 == "llm_gateway.usage").collect();
    assert!(!usage.is_empty() && usage.iter().all(|r| r.1["llm_gateway.team"] == "eng"));
}

#[test]
fn access_lists_refuse_other_models_and_v1_models_lists_exactly_the_allowed() {
    let fake = Fake::start(None);
    let access = json!({"access": {
        "default": {"allow": ["gpt-4o-mini"]},
        "consumers": {"alice": {"allow": ["gpt-*", "o3"]}},
        "teams": {"eng": {"deny": ["o3"]}},
    }});
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(config(json!({}), access)),
            ..Options::default()
        },
    );
    let send = |who: &str, model: &str| {
        post(
            &gw.url("/v1/chat/completions"),
            &[("content-type", "application/json"), ("x-consumer", who)],
            hello(model).to_string().as_bytes(),
        )
    };
    assert_eq!(send("alice", "gpt-4o").status, 200);
    let denied = send("alice", "o3");
    assert_eq!(denied.status, 404, "{}", denied.text());
    let e = denied.json();
    assert_eq!(e["error"]["code"], "model_not_found");
    assert_eq!(e["error"]["param"], "model");
    assert_eq!(
        e["error"]["message"],
        "The model `o3` does not exist or you do not have access to it."
    );
    assert!(denied.header("x-fake-received-model").is_none());
    assert_eq!(send("carol", "gpt-4o-mini").status, 200);
    assert_eq!(send("carol", "gpt-4o").status, 404);

    let list = |who: &str| -> Vec<String> {
        let r = get_with(&gw.url("/v1/models"), &[("x-consumer", who)]);
        assert_eq!(r.status, 200);
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list("alice"), ["gpt-4o-mini", "gpt-4o"]);
    assert_eq!(list("carol"), ["gpt-4o-mini"]);
    let one = get_with(&gw.url("/v1/models/gpt-4o"), &[("x-consumer", "carol")]);
    assert_eq!(one.status, 404);

    // Counted once each, as `model_denied`, costing nothing.
    assert_eq!(
        gw.counter_sum("wasmcustom.llm_gateway_requests_total.gen_ai_request_model=.=o3;.;gen_ai_provider_name=.=none;.;consumer=.=alice;.;team=.=eng;.;outcome=.=model_denied"),
        1
    );
    let log = gw.access_log(4);
    let denied: Vec<&Value> = log
        .iter()
        .filter(|l| l["outcome"] == "model_denied")
        .collect();
    assert_eq!(denied.len(), 2, "{log:?}");
}

#[test]
fn the_openai_sdk_raises_rate_limit_error_with_insufficient_quota_and_does_not_retry() {
    let (_fake, gw) = gateway(json!({"consumers": {"alice": {"budget": {"day": 0.001}}}}));
    let out = run_sdk_script(&gw, "openai_budget.py", "RateLimitError");
    assert!(
        out.contains("RateLimitError 429 insufficient_quota insufficient_quota"),
        "{out}"
    );
    // The SDK retries a 429 twice by default; `x-should-retry: false` stopped it.
    assert_eq!(
        gw.counter(
            "wasmcustom.llm_gateway_ratelimit_rejections_total.consumer=.=alice;.;reason=.=budget;.;"
        ),
        1
    );
}
