//! The official openai Python SDK through the gateway (stream and not, errors as SDK exceptions).

mod support;

use support::*;

#[test]
fn openai_python_sdk_works_unchanged() {
    let fake = Fake::start(None);
    let gw = Gateway::start(&fake, Options::default());
    run_sdk_script(&gw, "openai_smoke.py", "openai sdk smoke: ok");
}
