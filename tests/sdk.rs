//! The official openai Python SDK through the gateway (stream and not, errors as SDK exceptions).

mod support;

use std::process::Command;

use support::*;

#[test]
fn openai_python_sdk_works_unchanged() {
    let python = std::env::var("SDK_PYTHON").unwrap_or_else(|_| {
        repo()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    });
    let fake = Fake::start(None);
    let gw = Gateway::start(&fake, Options::default());
    let out = Command::new(&python)
        .arg(repo().join("tests/sdk/openai_smoke.py"))
        .arg(gw.url("/v1"))
        .arg(DEMO_KEY)
        .output()
        .unwrap_or_else(|e| panic!("run {python} (make test installs the openai SDK): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("openai sdk smoke: ok"), "{text}");
}
