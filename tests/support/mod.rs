//! Integration-test harness: real Envoy with the real wasm, and the fake provider.
//!
//! Every process is started on a free port (port 0, read back from the process), with
//! `--use-dynamic-base-id` so tests run in parallel, and killed when its handle drops.
//! The bootstrap is `envoy/gateway.yaml` itself, with ports, paths and (optionally) the plugin
//! configuration swapped, so the tests exercise the file that ships.

#![allow(dead_code)]

pub mod answers;
pub mod chroma;
pub mod usage;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const OPENAI_KEY: &str = "sk-test-openai-provider-key";
pub const BACKUP_KEY: &str = "test-backup-api-key";
pub const DEMO_KEY: &str = "sk-gateway-demo";
/// The Gemini API key the gateway's VM holds (the fake takes any unless told one).
pub const GEMINI_KEY: &str = "test-gemini-api-key";
/// The AWS credentials Envoy signs Bedrock requests with, and the fake checks them against.
pub const AWS_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
pub const AWS_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn wasm_path() -> PathBuf {
    let p = repo().join("target/wasm32-wasip1/release/llm_gateway.wasm");
    assert!(
        p.exists(),
        "{} is missing: run `make build` (make test does)",
        p.display()
    );
    p
}

pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let p = repo().join(".venv/bin/envoy");
    assert!(
        p.exists(),
        "no Envoy: set ENVOY_BIN or run `make envoy` (make test does)"
    );
    p
}

fn fake_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FAKE_PROVIDER_BIN") {
        return PathBuf::from(p);
    }
    for profile in ["release", "debug"] {
        let p = repo().join("target").join(profile).join("fake-provider");
        if p.exists() {
            return p;
        }
    }
    panic!("fake-provider binary missing: run `cargo build --release -p fake-provider` (make test does)");
}

/// The Envoy under test's version, `(major, minor)`.
pub fn envoy_version() -> (u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = Command::new(envoy_bin())
            .arg("--version")
            .output()
            .expect("envoy --version");
        let text = String::from_utf8_lossy(&out.stdout);
        // "... version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
        text.split('/')
            .find_map(|part| {
                let mut n = part.split('.');
                let major = n.next()?.parse().ok()?;
                let minor = n.next()?.parse().ok()?;
                n.next()?.parse::<u32>().ok()?;
                Some((major, minor))
            })
            .unwrap_or_else(|| panic!("no version in {text:?}"))
    })
}

/// Whether this Envoy has the composite cluster failover chains need (1.40 and later).
pub fn has_composite_cluster() -> bool {
    envoy_version() >= (1, 40)
}

/// What the fake provider echoes for a credential header's value (`x-fake-received-authorization`,
/// `x-fake-received-api-key`, and the credentials in `x-fake-received-headers`): `sha256:` and the
/// first 16 hex digits of the SHA-256 of the whole value (`fingerprint("Bearer sk-...")`).
pub fn fingerprint(value: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", &hex::encode(sha2::Sha256::digest(value))[..16])
}

/// Give the gateway filter's VM the provider key `key` as the environment variable `name`
/// (Envoy's environment, and one more `host_env_keys` entry).
pub fn with_env_key(opts: &mut Options, name: &'static str, key: &str) {
    opts.env.push((name.into(), key.into()));
    let earlier = opts.edit.take();
    opts.edit = Some(Box::new(move |b: &mut Value| {
        if let Some(edit) = earlier {
            edit(b);
        }
        b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"][0]["typed_config"]["config"]["vm_config"]["environment_variables"]
            ["host_env_keys"]
            .as_array_mut()
            .expect("host_env_keys")
            .push(name.into());
    }));
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a server that prints `listening on <addr>:<port>` once bound; its process and port.
fn spawn_listening(mut cmd: Command, what: &str) -> (Proc, u16) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what} banner: {e}"));
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected {what} banner {line:?}"));
    (proc, port)
}

/// Post a chat request as the consumer `team`, named by the trusted `x-team` header.
pub fn chat_as(gw: &Gateway, team: &str, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json"), ("x-team", team)];
    h.extend_from_slice(extra);
    post(
        &gw.url("/v1/chat/completions"),
        &h,
        body.to_string().as_bytes(),
    )
}

/// The fake LLM provider.
pub struct Fake {
    _proc: Proc,
    pub port: u16,
}

impl Fake {
    pub fn start(require_key: Option<&str>) -> Fake {
        Fake::start_with(require_key, &[])
    }

    /// The fake's embeddings of `texts`, asked directly (what the filter gets from it).
    pub fn embeddings(&self, texts: &[&str]) -> Vec<Vec<f64>> {
        let r = post(
            &format!("http://127.0.0.1:{}/v1/embeddings", self.port),
            &[("content-type", "application/json")],
            serde_json::json!({"model": "text-embedding-3-small", "input": texts})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| {
                d["embedding"]
                    .as_array()
                    .expect("floats")
                    .iter()
                    .map(|x| x.as_f64().expect("float"))
                    .collect()
            })
            .collect()
    }

    /// A fake that behaves as if every request carried `forced` control headers (a provider
    /// that is down: `("x-fake-status", "503")`; slow: `("x-fake-delay-ms", "3000")`).
    pub fn start_with(require_key: Option<&str>, forced: &[(&str, &str)]) -> Fake {
        Fake::start_args(require_key, forced, &[])
    }

    /// A fake started with extra command-line flags (`["--gcp-token-ttl-secs", "3"]`).
    pub fn start_args(require_key: Option<&str>, forced: &[(&str, &str)], args: &[&str]) -> Fake {
        let mut cmd = Command::new(fake_bin());
        cmd.args(args);
        cmd.args(["--listen", "127.0.0.1:0"]);
        cmd.args(["--aws-access-key-id", AWS_ACCESS_KEY_ID]);
        cmd.args(["--aws-secret-access-key", AWS_SECRET_ACCESS_KEY]);
        cmd.env_remove("AWS_SESSION_TOKEN").env_remove("AWS_REGION");
        if let Some(k) = require_key {
            cmd.args(["--require-key", k]);
        }
        for (k, v) in forced {
            cmd.arg("--force-header").arg(format!("{k}:{v}"));
        }
        let (proc, port) = spawn_listening(cmd, "fake-provider");
        Fake { _proc: proc, port }
    }
}

/// The plugin configuration envoy/gateway.yaml ships (the demo's), as JSON.
pub fn demo_config() -> Value {
    let text =
        std::fs::read_to_string(repo().join("envoy/gateway.yaml")).expect("read gateway.yaml");
    let b: Value = serde_norway::from_str(&text).expect("gateway.yaml is YAML");
    let value = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("the plugin configuration");
    serde_json::from_str(value).expect("the plugin configuration is JSON")
}

/// `config` with every provider's cool-down turned off: for tests that make a provider answer
/// 429 (or 503 with `Retry-After`) on purpose and then ask it again, which is not what they
/// test (tests/cooldown.rs tests cool-down).
pub fn without_cooldown(mut config: Value) -> Value {
    if let Some(providers) = config["providers"].as_object_mut() {
        for p in providers.values_mut() {
            p["cooldown"] = serde_json::json!({"max_ms": 0});
        }
    }
    config
}

/// The shipped failover cluster (`failover-openai-backup`) copied as `name`, a composite
/// cluster over `members` in order (the upstream filter as shipped).
pub fn chain_cluster(clusters: &[Value], name: &str, members: &[&str]) -> Value {
    let mut chain = clusters
        .iter()
        .find(|c| c["name"] == "failover-openai-backup")
        .cloned()
        .expect("gateway.yaml ships a failover cluster");
    chain["name"] = name.into();
    chain["cluster_type"]["typed_config"]["clusters"] = members
        .iter()
        .map(|m| serde_json::json!({"name": m}))
        .collect();
    chain
}

/// A change to the bootstrap (as JSON) before it is written.
pub type Edit = Box<dyn FnOnce(&mut Value)>;

/// Options for one gateway.
pub struct Options {
    /// Plugin configuration; `None` keeps the one in envoy/gateway.yaml.
    pub plugin_config: Option<Value>,
    pub workers: u32,
    /// Edit the bootstrap (as JSON) before it is written.
    pub edit: Option<Edit>,
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plugin_config: None,
            workers: 2,
            edit: None,
            env: vec![
                ("OPENAI_API_KEY".into(), OPENAI_KEY.into()),
                ("BACKUP_API_KEY".into(), BACKUP_KEY.into()),
                ("GEMINI_API_KEY".into(), GEMINI_KEY.into()),
                // Envoy's SigV4 signer signs the Bedrock requests with the fake's own
                // credentials (its defaults), and nothing else: a CI machine's real ones
                // never reach the fake.
                ("AWS_ACCESS_KEY_ID".into(), AWS_ACCESS_KEY_ID.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), AWS_SECRET_ACCESS_KEY.into()),
            ],
        }
    }
}

/// A running Envoy with the filter.
pub struct Gateway {
    proc: Proc,
    pub port: u16,
    pub admin: u16,
    pub dir: tempfile::TempDir,
}

pub fn bootstrap(fake_port: u16, opts: &mut Options, dir: &Path) -> Value {
    let text =
        std::fs::read_to_string(repo().join("envoy/gateway.yaml")).expect("read gateway.yaml");
    let mut b: Value = serde_norway::from_str(&text).expect("gateway.yaml is YAML");
    b["admin"]["address"]["socket_address"]["port_value"] = 0.into();
    let listener = &mut b["static_resources"]["listeners"][0];
    listener["address"]["socket_address"]["port_value"] = 0.into();
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["access_log"][0]["typed_config"]["path"] =
        dir.join("access.log").to_string_lossy().into_owned().into();
    let wasm = &mut hcm["http_filters"][0]["typed_config"]["config"];
    wasm["vm_config"]["code"]["local"]["filename"] =
        wasm_path().to_string_lossy().into_owned().into();
    if let Some(cfg) = &opts.plugin_config {
        wasm["configuration"]["value"] = cfg.to_string().into();
    }
    for cluster in b["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
    {
        let endpoints = cluster
            .get_mut("load_assignment")
            .and_then(|l| l.get_mut("endpoints"))
            .and_then(Value::as_array_mut);
        for ep in endpoints.into_iter().flatten() {
            for lb in ep["lb_endpoints"].as_array_mut().into_iter().flatten() {
                lb["endpoint"]["address"]["socket_address"]["port_value"] = fake_port.into();
            }
        }
    }
    if let Some(edit) = opts.edit.take() {
        edit(&mut b);
    }
    if !has_composite_cluster() {
        // An older Envoy cannot load the shipped failover chain: leave it out.
        let clusters = b["static_resources"]["clusters"]
            .as_array_mut()
            .expect("clusters");
        clusters.retain(|c| c["cluster_type"]["name"] != "envoy.clusters.composite");
        let routes = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
        if let Some(r) = routes.as_array_mut() {
            r.retain(|r| r["route"].get("retry_policy").is_none());
        }
    }
    // Upstream (per-cluster) instances of the filter run the same build.
    for cluster in b["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
    {
        let filters = cluster
            .get_mut("typed_extension_protocol_options")
            .and_then(|o| o.get_mut("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
            .and_then(|o| o.get_mut("http_filters"))
            .and_then(Value::as_array_mut);
        for f in filters.into_iter().flatten() {
            if f["name"] == "envoy.filters.http.wasm" {
                f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
                    wasm_path().to_string_lossy().into_owned().into();
            }
        }
    }
    b
}

impl Gateway {
    pub fn start(fake: &Fake, opts: Options) -> Gateway {
        match Gateway::try_start(fake, opts) {
            Ok(g) => g,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Start Envoy; `Err(log)` when it exits before it is ready.
    pub fn try_start(fake: &Fake, mut opts: Options) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bootstrap(fake.port, &mut opts, dir.path());
        let cfg = dir.path().join("envoy.json");
        std::fs::write(&cfg, serde_json::to_vec_pretty(&b).expect("json"))
            .expect("write bootstrap");
        let admin_path = dir.path().join("admin.txt");
        let log_path = dir.path().join("envoy.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&cfg)
            .args([
                "--use-dynamic-base-id",
                "--log-level",
                "info",
                // Access-log lines reach the file within 50 ms, not Envoy's default 10 s.
                "--file-flush-interval-msec",
                "50",
                "--concurrency",
            ])
            .arg(opts.workers.to_string())
            .arg("--admin-address-path")
            .arg(&admin_path)
            .current_dir(repo())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start envoy");
        let mut proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let admin = loop {
            if let Ok(Some(status)) = proc.0.try_wait() {
                return Err(format!("envoy exited with {status}\n{}", read_log()));
            }
            if Instant::now() > deadline {
                return Err(format!("envoy not ready in 60 s\n{}", read_log()));
            }
            if let Ok(s) = std::fs::read_to_string(&admin_path) {
                if let Some(port) = s
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    if get(port, "/ready").map(|(s, _)| s == 200).unwrap_or(false) {
                        break port;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (_, listeners) = get(admin, "/listeners?format=json").expect("listeners");
        let v: Value = serde_json::from_str(&listeners).expect("listeners json");
        let port = v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .expect("listener port") as u16;
        Ok(Gateway {
            proc,
            port,
            admin,
            dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn stats(&self) -> String {
        get(self.admin, "/stats").expect("stats").1
    }

    pub fn prometheus(&self) -> String {
        get(self.admin, "/stats/prometheus").expect("prometheus").1
    }

    /// The value of one counter in `/stats` (0 when absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.stats()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The sum of every counter in `/stats` whose name starts with `prefix` (all label
    /// combinations of one metric).
    pub fn counter_sum(&self, prefix: &str) -> u64 {
        self.stats()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
            .sum()
    }

    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Access-log lines, waiting (up to 10 s) until there are at least `n`.
    pub fn access_log(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
            // Envoy may be mid-write: only lines it has finished (ended by a newline) count.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            let lines: Vec<Value> = complete
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line {l:?}: {e}"))
                })
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the Envoy process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.proc.0.try_wait(), Ok(None))
    }
}

/// A plain GET over HTTP/1.1: (status, body).
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let agent = agent();
    match agent.get(&format!("http://127.0.0.1:{port}{path}")).call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            Ok((status, body))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header that must be present and numeric (the `x-ratelimit-*` family).
    pub fn num(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The fake provider's echo of the headers it received.
    pub fn received_headers(&self) -> Value {
        use base64::Engine;
        let b64 = self.header("x-fake-received-headers").expect("echo header");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        serde_json::from_slice(&raw).expect("json")
    }
}

/// POST `body` to the gateway with `headers`.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    send(url, headers, body, false)
}

/// POST like `post`, keeping what arrived when the body ends in an error (a stream the
/// provider cut short).
pub fn post_lenient(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    send(url, headers, body, true)
}

fn send(url: &str, headers: &[(&str, &str)], body: &[u8], lenient: bool) -> Resp {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    into_resp(r, lenient)
}

/// A GET with `headers`, any status.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    into_resp(r, true)
}

/// The whole answer; `lenient`: a body cut short is kept as far as it came.
fn into_resp(mut r: ureq::http::Response<ureq::Body>, lenient: bool) -> Resp {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let read = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .reader()
        .read_to_end(&mut body);
    if !lenient {
        read.expect("read body");
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// POST JSON with the demo consumer key.
pub fn chat(gw: &Gateway, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let auth = format!("Bearer {DEMO_KEY}");
    let mut h: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("authorization", &auth),
    ];
    h.extend_from_slice(extra);
    post(
        &gw.url("/v1/chat/completions"),
        &h,
        body.to_string().as_bytes(),
    )
}

/// Send raw bytes as one HTTP/1.1 request and return the raw response (connection: close).
pub fn raw(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A free TCP port on 127.0.0.1 (for servers that cannot bind port 0 and report it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real Redis (Debian's redis-server), without persistence, on a free port.
pub struct Redis {
    _proc: Proc,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server is not installed: run `make redis` (make test does)");
        let proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf).is_ok_and(|n| &buf[..n] == b"+PONG\r\n")
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { _proc: proc, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

fn rls_bin() -> PathBuf {
    let p = repo().join("rls-fixture/target/release/ratelimit-service");
    assert!(
        p.exists(),
        "{} is missing: run `make fake` (make test does)",
        p.display()
    );
    p
}

/// The rate limit service fixture (`rls-fixture/`): Envoy's RLS gRPC protocol, counters in
/// Redis, configuration in envoyproxy/ratelimit's format.
pub struct RateLimitService {
    _proc: Proc,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RateLimitService {
    pub fn start(redis: &Redis, config_yaml: &str, delay_ms: Option<u64>) -> RateLimitService {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config_yaml).expect("write rls config");
        let mut cmd = Command::new(rls_bin());
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &redis.url(),
            "--config",
        ])
        .arg(&cfg);
        if let Some(d) = delay_ms {
            cmd.args(["--delay-ms", &d.to_string()]);
        }
        let (proc, port) = spawn_listening(cmd, "ratelimit-service");
        RateLimitService {
            _proc: proc,
            port,
            _dir: dir,
        }
    }
}

/// An HTTP/2 cluster named `name` at 127.0.0.1:`port` (a gRPC service).
pub fn grpc_cluster(name: &str, port: u16) -> Value {
    serde_json::json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
}

/// Run a Python SDK script from tests/sdk with the gateway's `/v1` URL and the demo key; its
/// combined output, after asserting it exited 0 and printed `expect`.
pub fn run_sdk_script(gw: &Gateway, script: &str, expect: &str) -> String {
    run_sdk_script_with(gw, script, &[], expect)
}

/// [`run_sdk_script`] with more arguments after the URL and the key.
pub fn run_sdk_script_with(gw: &Gateway, script: &str, args: &[&str], expect: &str) -> String {
    let python = std::env::var("SDK_PYTHON").unwrap_or_else(|_| {
        repo()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    });
    let out = Command::new(&python)
        .arg(repo().join("tests/sdk").join(script))
        .arg(gw.url("/v1"))
        .arg(DEMO_KEY)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {python} (make test installs the SDKs): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(expect), "{text}");
    text
}

/// The project's Python (the venv `make test` fills), or `SDK_PYTHON`.
pub fn python() -> String {
    std::env::var("SDK_PYTHON").unwrap_or_else(|_| {
        repo()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    })
}

/// The stub usage collector (tests/collector/collector.py): records every post.
pub struct Collector {
    _proc: Proc,
    pub port: u16,
}

impl Collector {
    /// `args`: `--status N`, `--fail-first N`, `--delay-ms N`.
    pub fn start(args: &[&str]) -> Collector {
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/collector/collector.py"))
            .args(args);
        let (proc, port) = spawn_listening(cmd, "collector (make test installs its Python deps)");
        Collector { _proc: proc, port }
    }

    /// Every post so far.
    pub fn received(&self) -> Vec<Value> {
        let (_, body) = get(self.port, "/received").expect("collector /received");
        serde_json::from_str(&body).expect("collector json")
    }

    /// Posts, waiting (up to `secs`) until `done` holds for them.
    pub fn wait_for(&self, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.received();
            if done(&r) || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A plain HTTP/1.1 cluster named `name` at 127.0.0.1:`port`.
/// A gateway with the plugin `config`, `workers` workers, and an extra HTTP cluster `name`
/// reaching 127.0.0.1:`port`.
pub fn gateway_with_cluster(
    fake: &Fake,
    config: Value,
    workers: u32,
    name: &'static str,
    port: u16,
) -> Gateway {
    Gateway::start(
        fake,
        Options {
            plugin_config: Some(config),
            workers,
            edit: Some(Box::new(move |b: &mut Value| {
                b["static_resources"]["clusters"]
                    .as_array_mut()
                    .expect("clusters")
                    .push(http_cluster(name, port));
            })),
            ..Options::default()
        },
    )
}

/// The cosine similarity of two vectors.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

pub fn http_cluster(name: &str, port: u16) -> Value {
    serde_json::json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
}

/// The value of one metric line of `/stats/prometheus` (`name{labels} value`), by its name and
/// label subset; the sum over every line that matches.
pub fn prom_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
