//! Hot reload of the routing rules in real Envoy, the way Kubernetes delivers a ConfigMap.
//!
//! The bootstrap is the one the Kubernetes manifests ship (k8s/standalone/base/envoy.yaml); the
//! filter and its rules come from k8s/standalone/base/rules/filter.yaml through ECDS with a
//! filesystem config source. The rules directory is laid out as kubelet lays out a ConfigMap
//! volume (`filter.yaml -> ..data/filter.yaml`, `..data -> ..<timestamp>`) and updated as kubelet
//! does it: a new timestamped directory, then an atomic rename of the `..data` symlink.

mod support;

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A kubelet-style ConfigMap volume holding `filter.yaml`.
struct RulesDir {
    dir: PathBuf,
    version: u32,
}

impl RulesDir {
    fn new(dir: &Path, filter_yaml: &str) -> RulesDir {
        std::fs::create_dir_all(dir).unwrap();
        let mut r = RulesDir {
            dir: dir.to_path_buf(),
            version: 0,
        };
        let data = r.write_version(filter_yaml);
        symlink(&data, dir.join("..data")).unwrap();
        symlink("..data/filter.yaml", dir.join("filter.yaml")).unwrap();
        r
    }

    fn write_version(&mut self, filter_yaml: &str) -> String {
        self.version += 1;
        let name = format!(
            "..2026_11_24_00_00_{:02}.{}",
            self.version,
            std::process::id()
        );
        let d = self.dir.join(&name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("filter.yaml"), filter_yaml).unwrap();
        name
    }

    /// Swap in a new version atomically, as kubelet's AtomicWriter does.
    fn update(&mut self, filter_yaml: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).unwrap();
        let data = self.write_version(filter_yaml);
        let tmp = self.dir.join("..data_tmp");
        symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.join(old)).unwrap();
    }
}

/// The shipped rules file with the wasm path and the plugin configuration replaced.
fn filter_yaml(plugin_config: &Value) -> String {
    let text =
        std::fs::read_to_string(repo().join("k8s/standalone/base/rules/filter.yaml")).unwrap();
    let mut v: Value = serde_norway::from_str(&text).unwrap();
    let cfg = &mut v["resources"][0]["typed_config"]["config"];
    cfg["vm_config"]["code"]["local"]["filename"] =
        wasm_path().to_string_lossy().into_owned().into();
    cfg["vm_config"]["environment_variables"]["host_env_keys"] =
        json!(["OPENAI_API_KEY", "BACKUP_API_KEY"]);
    cfg["configuration"]["value"] = plugin_config.to_string().into();
    serde_norway::to_string(&v).unwrap()
}

fn rules(provider_for_mini: &str) -> Value {
    json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "backup": {"cluster": "backup", "auth": "api-key", "api_key_env": "BACKUP_API_KEY"}
        },
        "routes": [{"match": {"model": "gpt-4o-mini"}, "to": {"provider": provider_for_mini}}],
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}]
    })
}

/// The k8s bootstrap pointed at the fake provider and at `rules_dir`.
fn k8s_bootstrap(fake_port: u16, rules_dir: &Path) -> Value {
    let text = std::fs::read_to_string(repo().join("k8s/standalone/base/envoy.yaml")).unwrap();
    let mut b: Value = serde_norway::from_str(&text).unwrap();
    b["admin"]["address"]["socket_address"]["port_value"] = 0.into();
    for l in b["static_resources"]["listeners"].as_array_mut().unwrap() {
        l["address"]["socket_address"]["address"] = "127.0.0.1".into();
        l["address"]["socket_address"]["port_value"] = 0.into();
    }
    let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let src =
        &mut hcm["http_filters"][0]["config_discovery"]["config_source"]["path_config_source"];
    src["path"] = rules_dir
        .join("filter.yaml")
        .to_string_lossy()
        .into_owned()
        .into();
    src["watched_directory"]["path"] = rules_dir.to_string_lossy().into_owned().into();
    // Providers: the fake, in plain HTTP; `backup` is a second name for it.
    let clusters = b["static_resources"]["clusters"].as_array_mut().unwrap();
    for c in clusters.iter_mut().filter(|c| c["name"] == "openai") {
        c["type"] = "STATIC".into();
        c.as_object_mut().unwrap().remove("transport_socket");
        c.as_object_mut().unwrap().remove("dns_lookup_family");
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"] = json!({"address": "127.0.0.1", "port_value": fake_port});
    }
    let mut backup = clusters
        .iter()
        .find(|c| c["name"] == "openai")
        .unwrap()
        .clone();
    backup["name"] = "backup".into();
    backup["load_assignment"]["cluster_name"] = "backup".into();
    clusters.push(backup);
    b
}

fn served_by(r: &Resp) -> &'static str {
    if r.header("x-fake-received-api-key") == Some(&fingerprint(BACKUP_KEY)) {
        "backup"
    } else if r.header("x-fake-received-authorization")
        == Some(&fingerprint(&format!("Bearer {OPENAI_KEY}")))
    {
        "openai"
    } else {
        panic!("unexpected upstream credentials: {:?}", r.headers)
    }
}

fn mini(gw: &Gateway) -> Resp {
    let r = chat(
        gw,
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rules_reload_from_a_configmap_style_directory() {
    let fake = Fake::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let rules_dir = tmp.path().join("rules");
    let mut dir = RulesDir::new(&rules_dir, &filter_yaml(&rules("openai")));
    let b = k8s_bootstrap(fake.port, &rules_dir);
    let opts = Options {
        edit: Some(Box::new(move |boot: &mut Value| *boot = b)),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);
    assert_eq!(served_by(&mini(&gw)), "openai");

    // A slow stream in flight across the reload.
    let url = gw.url("/v1/chat/completions");
    let stream = std::thread::spawn(move || {
        let body = json!({"model": "gpt-4o-mini", "stream": true,
                          "messages": [{"role": "user", "content": "a long answer"}]});
        let mut r = agent()
            .post(&url)
            .header("authorization", format!("Bearer {DEMO_KEY}"))
            .header("x-fake-chunk-delay-ms", "100")
            .header("x-fake-completion-tokens", "30")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        let mut text = String::new();
        r.body_mut().as_reader().read_to_string(&mut text).unwrap();
        (status, text)
    });
    std::thread::sleep(Duration::from_millis(500));

    // New rules: gpt-4o-mini now goes to the backup provider.
    let t0 = Instant::now();
    dir.update(&filter_yaml(&rules("backup")));
    wait_for("the new rules", || served_by(&mini(&gw)) == "backup");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "reload took {took:?}");

    let (status, text) = stream.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "stream cut short: {text}"
    );
    assert_eq!(text.matches("\"content\":\" ").count(), 29, "{text}");

    // A broken configuration (unknown provider) is rejected; the previous rules keep serving.
    let fail = "extension_config_discovery.http_filter.llm_gateway.config_fail";
    let before = gw.counter(fail);
    let mut broken = rules("backup");
    broken["routes"][0]["to"]["provider"] = "nope".into();
    dir.update(&filter_yaml(&broken));
    wait_for("the broken rules to be rejected", || {
        gw.counter(fail) > before
    });
    for _ in 0..5 {
        assert_eq!(served_by(&mini(&gw)), "backup");
    }
    assert!(
        gw.envoy_log()
            .contains("routes[0].to.provider: unknown provider \"nope\""),
        "the rejection names the field"
    );

    // So is a file that is not even YAML.
    let before = gw.counter(fail);
    dir.update("resources: [ {{{ not yaml");
    wait_for("the unreadable file to be rejected", || {
        gw.counter(fail) > before
    });
    assert_eq!(served_by(&mini(&gw)), "backup");

    // And a good file after that is taken again.
    dir.update(&filter_yaml(&rules("openai")));
    wait_for("recovery", || served_by(&mini(&gw)) == "openai");
}

/// Usage events still buffered when new rules replace the old ones are posted by the old VM
/// before it goes (`on_done`), not lost.
#[test]
fn buffered_usage_events_are_posted_when_the_rules_change() {
    let fake = Fake::start(None);
    let sink = Collector::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let rules_dir = tmp.path().join("rules");
    let with_export = |provider: &str| {
        let mut r = rules(provider);
        // Neither bound is reached by this test: only the reload can flush.
        r["usage_export"] = json!({"cluster": "usage", "format": "json",
                                   "batch_size": 1000, "flush_interval_ms": 600000});
        r
    };
    let mut dir = RulesDir::new(&rules_dir, &filter_yaml(&with_export("openai")));
    let mut b = k8s_bootstrap(fake.port, &rules_dir);
    b["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(http_cluster("usage", sink.port));
    let opts = Options {
        workers: 1,
        edit: Some(Box::new(move |boot: &mut Value| *boot = b)),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);
    for _ in 0..3 {
        assert_eq!(served_by(&mini(&gw)), "openai");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.received().is_empty(), "nothing is due yet");

    let mut old_rules = 3;
    dir.update(&filter_yaml(&with_export("backup")));
    wait_for("the new rules", || {
        let by = served_by(&mini(&gw));
        old_rules += usize::from(by == "openai");
        by == "backup"
    });
    let posts = sink.wait_for(10, |p| !p.is_empty());
    let events: Vec<Value> = posts
        .iter()
        .flat_map(|p| {
            serde_json::from_str::<Vec<Value>>(p["body"].as_str().unwrap_or("[]")).unwrap()
        })
        .collect();
    // Every request the old rules served, and only those (the new VM keeps its own).
    assert_eq!(events.len(), old_rules, "{posts:?}");
    assert!(events.iter().all(|e| e["provider"] == "openai"));
}

/// The demo consumer (team eng) with a $0.05 monthly budget at $0.001 a token, the budgets'
/// clock moved by `skew_s`, and the default access list `allow`.
fn budget_rules(skew_s: i64, allow: &[&str]) -> Value {
    let mut r = rules("openai");
    r["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"match": {"model": "gpt-4o"}, "to": {"provider": "openai"}}));
    r["consumers"][0]["team"] = "eng".into();
    r["pricing"] = json!({"models": {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}});
    r["limits"] = json!({
        "consumers": {"demo": {"budget": {"month": 0.05}}},
        "budgets": {"clock_skew_s": skew_s},
    });
    r["access"] = json!({"default": {"allow": allow}});
    r
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn budgets_keep_their_spend_across_a_reload_and_start_again_at_the_month_boundary() {
    // 2027-07-01 00:00 UTC.
    const JULY: i64 = 1_814_400_000;
    let fake = Fake::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let rules_dir = tmp.path().join("rules");
    // The budgets' clock reads an hour before July.
    let june = JULY - 3600 - now_s();
    let mut dir = RulesDir::new(
        &rules_dir,
        &filter_yaml(&budget_rules(june, &["gpt-4o-mini"])),
    );
    let b = k8s_bootstrap(fake.port, &rules_dir);
    let opts = Options {
        edit: Some(Box::new(move |boot: &mut Value| *boot = b)),
        ..Options::default()
    };
    let gw = Gateway::start(&fake, opts);
    let ask = || {
        chat(
            &gw,
            &json!({"model": "gpt-4o-mini", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}),
            &[("x-fake-completion-tokens", "2")],
        )
    };
    let mut admitted = 0;
    let refusal = loop {
        let r = ask();
        if r.status != 200 {
            break r;
        }
        admitted += 1;
        assert!(admitted < 10, "the budget never refused");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refusal.status, 429, "{}", refusal.text());
    let msg = refusal.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("The budget resets at 2027-07-01 00:00 UTC (in 59m"),
        "{msg}"
    );

    // A reload that changes something else (the access list) keeps what was spent.
    dir.update(&filter_yaml(&budget_rules(
        june,
        &["gpt-4o-mini", "gpt-4o"],
    )));
    let probe = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    wait_for("the new access list", || {
        chat(&gw, &probe, &[]).status != 404
    });
    let r = ask();
    assert_eq!(r.status, 429, "spend kept across the reload: {}", r.text());

    // The calendar reaches July (the same clock, an hour and a minute on): a new month.
    let july = JULY + 60 - now_s();
    dir.update(&filter_yaml(&budget_rules(
        july,
        &["gpt-4o-mini", "gpt-4o"],
    )));
    wait_for("the new month", || ask().status == 200);
    let r = ask();
    assert_eq!(r.status, 200);
    let left: f64 = r
        .header("x-llm-budget-remaining-usd")
        .unwrap()
        .parse()
        .unwrap();
    assert!(left > 0.02, "a fresh month: {left}");
}
