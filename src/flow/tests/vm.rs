//! The VM: its configuration, its tick (usage posts, reports to the global service) and its
//! end.

use std::time::Duration;

use serde_json::json;

use super::support::*;
use crate::flow::vm::{Role, Vm, COOLDOWN_SWEEP_PERIOD, REPORT_PERIOD};
use crate::flow::{self, Step};
use crate::host::fake::FakeHost;
use crate::metrics::stat_name;
use crate::names::metric;
use crate::rls;

fn configure(h: &FakeHost, cfg: &str) -> Result<Duration, String> {
    Vm::configure(h, cfg.as_bytes()).map(|(_, tick)| tick)
}

#[test]
fn a_bad_configuration_is_refused_naming_the_field() {
    let h = host(&[]);
    assert_eq!(
        configure(&h, "{"),
        Err("?: EOF while parsing an object at line 1 column 1".to_string())
    );
    let mut c = config();
    c["routes"][1]["to"]["provider"] = json!("opena1");
    assert_eq!(
        configure(&h, &c.to_string()),
        Err(r#"routes[1].to.provider: unknown provider "opena1""#.to_string())
    );
    let mut bare = host(&[]);
    bare.env.clear();
    assert_eq!(
        configure(&bare, &config().to_string()),
        Err("providers.azure.api_key_env: environment variable AZURE_API_KEY is not set in the Wasm VM (list it in vm_config.environment_variables.host_env_keys)".to_string())
    );
    for upstream in [r#"{"role": "upstream", "x": 1}"#, r#"{"role": "gateway"}"#] {
        assert_eq!(
            configure(&h, upstream),
            Err(
                r#"the upstream filter's configuration is exactly {"role": "upstream"}"#
                    .to_string()
            )
        );
    }
}

#[test]
fn the_upstream_role_makes_no_exchanges_and_never_ticks() {
    let mut h = host(&[]);
    let (mut vm, tick) = Vm::configure(&h, br#"{"role": "upstream"}"#).unwrap();
    assert!(matches!(vm.role, Role::Upstream));
    assert_eq!(tick, Duration::ZERO);
    assert!(vm.exchange(1).is_none());
    assert_eq!(vm.on_tick(&mut h), Some(Duration::ZERO));
    assert!(vm.on_done(&mut h));
    assert!(h.callouts.is_empty() && h.updates.is_empty());
}

#[test]
fn the_tick_runs_only_when_there_is_work_for_it() {
    let mut h = host(&[]);
    // Providers cool down by default: a slow tick sweeps their ended cool-downs.
    assert_eq!(
        configure(&h, &config().to_string()),
        Ok(COOLDOWN_SWEEP_PERIOD)
    );
    let mut quiet = config();
    for p in ["openai", "claude", "azure"] {
        quiet["providers"][p]["cooldown"] = json!({"max_ms": 0});
    }
    assert_eq!(configure(&h, &quiet.to_string()), Ok(Duration::ZERO));
    let export = config_with(json!({"usage_export": {"cluster": "usage"}}));
    assert_eq!(configure(&h, &export.to_string()), Ok(REPORT_PERIOD));
    // `tokenizer.preload` (older configurations) is accepted and asks for no tick: the rank
    // tables are static data, with nothing to load.
    let mut preload = quiet.clone();
    preload["tokenizer"] = json!({"preload": ["o200k_base"]});
    let (mut vm, tick) = Vm::configure(&h, preload.to_string().as_bytes()).unwrap();
    assert_eq!(tick, Duration::ZERO);
    assert_eq!(vm.on_tick(&mut h), Some(Duration::ZERO));
    let bad = config_with(json!({"tokenizer": {"preload": ["p50k_nonesuch"]}}));
    assert!(Vm::configure(&h, bad.to_string().as_bytes()).is_err());
}

fn exporting() -> serde_json::Value {
    config_with(
        json!({"usage_export": {"cluster": "usage", "format": "json", "path": "/events",
                                        "headers": {"x-tenant": "acme"}, "flush_interval_ms": 1000}}),
    )
}

fn buffered(h: &FakeHost) -> i64 {
    h.metric_value(metric::USAGE_BUFFERED)
}

#[test]
fn usage_events_are_posted_from_the_tick_and_counted_once_delivered() {
    let mut h = host(&chat());
    let mut vm = vm(&h, &exporting());
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    assert_eq!(buffered(&h), 1);
    // Not due before the flush interval.
    assert_eq!(vm.on_tick(&mut h), Some(REPORT_PERIOD));
    assert!(h.callouts.is_empty());
    h.advance_ms(1000);
    vm.on_tick(&mut h);
    let [post] = h.callouts.as_slice() else {
        panic!("one post: {:?}", h.callouts);
    };
    assert_eq!(
        (post.kind, post.cluster.as_str(), post.path.as_str()),
        ("http", "usage", "/events")
    );
    assert_eq!(post.timeout_ms, 5000);
    for header in [(":authority", "usage"), ("x-tenant", "acme")] {
        assert!(
            post.headers
                .contains(&(header.0.to_string(), header.1.to_string())),
            "{header:?} in {:?}",
            post.headers
        );
    }
    let events = parsed(&post.body);
    assert_eq!(events.as_array().map(Vec::len), Some(1));
    let e = &events[0];
    for (k, v) in [
        ("request_id", json!("req-1")),
        ("consumer", json!("team-a")),
        ("provider", json!("openai")),
        ("request_model", json!("gpt-4o-mini")),
        ("status", json!(200)),
        ("outcome", json!("ok")),
        ("prompt_tokens", json!(8)),
        ("completion_tokens", json!(5)),
        ("total_tokens", json!(13)),
    ] {
        assert_eq!(e[k], v, "{k}");
    }
    let token = post.token;
    h.answer_call(200, b"");
    vm.on_call_answer(&mut h, token, 0);
    assert_eq!(h.metric_value(metric::USAGE_SENT), 1);
    assert_eq!(buffered(&h), 0);
}

#[test]
fn a_failed_usage_post_is_counted_and_kept_for_a_retry() {
    let mut h = host(&chat());
    let mut vm = vm(&h, &exporting());
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    h.advance_ms(1000);
    vm.on_tick(&mut h);
    let token = h.callouts[0].token;
    h.answer_call(503, b"no healthy upstream");
    vm.on_call_answer(&mut h, token, 0);
    let failures = stat_name(metric::USAGE_POST_FAILURES, &[(metric::TAG_REASON, "503")]);
    assert_eq!(h.metric_value(&failures), 1);
    assert_eq!(h.metric_value(metric::USAGE_SENT), 0);
    assert_eq!(buffered(&h), 1);
    // Retried after the back-off (one flush interval).
    h.advance_ms(1000);
    vm.on_tick(&mut h);
    assert_eq!(h.callouts.len(), 2);
    assert_eq!(h.callouts[1].body, h.callouts[0].body);
}

#[test]
fn a_stopping_vm_posts_what_is_left_and_says_when_it_is_done() {
    let mut h = host(&chat());
    let mut vm = vm(&h, &exporting());
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    // Drained at once, before the flush interval.
    assert!(!vm.on_done(&mut h));
    assert_eq!(h.callouts.len(), 1);
    assert!(!h.done_called);
    let token = h.callouts[0].token;
    h.answer_call(200, b"");
    vm.on_call_answer(&mut h, token, 0);
    assert!(h.done_called);
}

#[test]
fn the_tokens_a_request_used_beyond_its_admission_are_reported_to_the_global_service() {
    let cfg = config_with(json!({"limits": {"global": {"cluster": "ratelimit", "domain": "gw"}}}));
    let mut h = host(&chat());
    let mut vm = vm(&h, &cfg);
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Pause);
    // The service's answer: OK, nothing else said.
    let token = h.callouts[0].token;
    let step = ex.on_global_answer(&mut h, token, 0, 0);
    flow::resume(&mut h, step);
    assert_eq!(h.resumed, 1);
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    ex.finish(&mut h);
    // Charged 8 (the counted prompt) at admission, 13 used: 5 more, and no request.
    vm.on_tick(&mut h);
    let [_, report] = h.callouts.as_slice() else {
        panic!("two calls: {:?}", h.callouts);
    };
    assert_eq!(
        (report.kind, report.cluster.as_str()),
        ("grpc", "ratelimit")
    );
    assert_eq!(
        report.body,
        rls::request("gw", "team-a", Some("gpt-4o-mini"), 0, 5, None).0
    );
    // Nothing more owed.
    vm.on_tick(&mut h);
    assert_eq!(h.callouts.len(), 2);
    vm.on_grpc_answer(&mut h, 0);
    assert_eq!(h.metric_value(metric::GLOBAL_REPORT_FAILURES), 0);
    vm.on_grpc_answer(&mut h, 14);
    assert_eq!(h.metric_value(metric::GLOBAL_REPORT_FAILURES), 1);
}
