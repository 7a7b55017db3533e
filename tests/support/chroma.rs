//! A real Chroma server for the semantic cache tests: `chroma run` from the chromadb package in
//! the project venv (`CHROMA_BIN` overrides it), offline, on a free port with its data in a
//! temporary directory, killed (and the directory removed) when the handle drops.
//!
//! `chroma run` cannot bind port 0 and report it, so the port comes from `free_port`; a server
//! that lost the port to another process exits at once ("Address ... is not available"), and
//! start() then tries another. Ready means our process is alive, has logged that it listens,
//! and answers `GET /api/v2/heartbeat` with 200 (about 1.3 s on an idle machine).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, repo, Proc};

/// How long the server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Servers tried, each on its own free port, while they exit at once (a port taken).
const ATTEMPTS: usize = 3;
/// What Chroma logs once its listener is bound.
const LISTENING: &str = "Frontend server listening";

/// The `chroma` CLI: `CHROMA_BIN`, else the project venv's.
pub fn chroma_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CHROMA_BIN") {
        return PathBuf::from(p);
    }
    let p = repo().join(".venv/bin/chroma");
    assert!(
        p.exists(),
        "{} is missing: set CHROMA_BIN or install chromadb into the venv (make test does)",
        p.display()
    );
    p
}

/// A running Chroma server.
pub struct Chroma {
    // Dropped first: the process is killed before its directory is removed.
    _proc: Proc,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Chroma {
    pub fn start() -> Chroma {
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match Chroma::try_start() {
                Ok(c) => return c,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "chroma did not start after {ATTEMPTS} attempts:\n{}",
            failures.join("\n\n")
        );
    }

    /// A ready server, or why it exited; panics when it cannot start or is not ready in time.
    fn try_start() -> Result<Chroma, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let log = dir.path().join("chroma.log");
        let out = std::fs::File::create(&log).expect("create chroma.log");
        let err = out.try_clone().expect("clone chroma.log");
        let port = free_port();
        let bin = chroma_bin();
        let child = Command::new(&bin)
            .arg("run")
            .arg("--path")
            .arg(&data)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // The Python client's product telemetry; the server sends none, and the tests
            // must never depend on the network.
            .env("ANONYMIZED_TELEMETRY", "False")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {} (make test installs chromadb): {e}", bin.display())
            });
        let mut proc = Proc(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = proc.0.try_wait() {
                return Err(format!(
                    "chroma on port {port} exited ({status}); its log ends:\n{}",
                    tail(&read_log(&log))
                ));
            }
            if read_log(&log).contains(LISTENING) && heartbeat(port) {
                return Ok(Chroma {
                    _proc: proc,
                    port,
                    log,
                    _dir: dir,
                });
            }
            assert!(
                Instant::now() < deadline,
                "chroma on port {port} not ready after {READY_TIMEOUT:?}; its log ends:\n{}",
                tail(&read_log(&log))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the server printed so far (its log goes to stdout).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }
}

fn read_log(path: &PathBuf) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last lines of a log, without terminal colours.
fn tail(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let lines: Vec<&str> = plain.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Whether `GET /api/v2/heartbeat` answers 200.
fn heartbeat(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /api/v2/heartbeat HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}
