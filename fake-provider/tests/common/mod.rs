//! Shared by the binary tests: the fake started as a process, raw HTTP/1.1 over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fake-provider");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end()
            .to_owned();
        assert!(line.ends_with('\n'));
        Server { child, addr }
    }

    /// Sends one HTTP/1.1 request and returns the raw response bytes (and
    /// whether reading ended in an error such as a reset).
    pub fn raw(&self, head: &str, body: &str) -> (Vec<u8>, bool) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{head}\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = Vec::new();
        let failed = s.read_to_end(&mut out).is_err();
        (out, failed)
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("fake-provider did not exit within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits a response into its head and its HTTP/1.1 chunks; `complete`
/// tells whether the terminating zero-size chunk was seen.
pub fn chunks(raw: &[u8]) -> (String, Vec<String>, bool) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("response head");
    assert!(head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    let mut out = Vec::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (head.to_owned(), out, false);
        };
        let size = usize::from_str_radix(size, 16).expect("chunk size");
        if size == 0 {
            return (head.to_owned(), out, after == "\r\n");
        }
        if after.len() < size + 2 {
            return (head.to_owned(), out, false);
        }
        out.push(after[..size].to_owned());
        rest = &after[size + 2..];
    }
}
