//! The body sent upstream: the client's body with `model` replaced and `include_usage` set (never
//! for the Responses API), spliced from the raw members rather than re-serialised.

use serde_json::value::RawValue;

use super::{Endpoint, Request, TopLevel};

impl Request<'_> {
    /// The body to send upstream, if it must change: `model` replaced by `new_model`, and
    /// `stream_options.include_usage` set when `add_include_usage`. `None` means "send as is".
    /// A Responses body only ever has its model replaced: its streams end with usage anyway,
    /// and its `stream_options` has no `include_usage`.
    pub fn rewrite(&self, new_model: Option<&str>, add_include_usage: bool) -> Option<Vec<u8>> {
        let add_include_usage = add_include_usage && self.endpoint != Endpoint::Responses;
        let model_changes = new_model.is_some_and(|m| m != self.model);
        if !model_changes && !add_include_usage {
            return None;
        }
        let mut out = Vec::with_capacity(
            self.top
                .0
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 64,
        );
        out.push(b'{');
        let mut first = true;
        let mut push_member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys are re-encoded (they may have been unescaped); values are copied raw.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value);
        };
        let mut wrote_stream_options = false;
        for (k, v) in &self.top.0 {
            match (k.as_ref(), new_model) {
                ("model", Some(m)) if model_changes => {
                    let encoded = serde_json::to_vec(m).unwrap_or_default();
                    push_member(&mut out, k, &encoded);
                }
                ("stream_options", _) if add_include_usage => {
                    push_member(&mut out, k, &with_include_usage(v));
                    wrote_stream_options = true;
                }
                _ => push_member(&mut out, k, v.get().as_bytes()),
            }
        }
        if add_include_usage && !wrote_stream_options {
            push_member(&mut out, "stream_options", br#"{"include_usage":true}"#);
        }
        out.push(b'}');
        Some(out)
    }
}

/// `stream_options` with `include_usage: true`, keeping the client's other options.
fn with_include_usage(raw: &RawValue) -> Vec<u8> {
    match serde_json::from_str::<TopLevel>(raw.get()) {
        Ok(obj) => {
            let mut out = b"{\"include_usage\":true".to_vec();
            for (k, v) in obj.0.iter().filter(|(k, _)| k != "include_usage") {
                out.push(b',');
                let _ = serde_json::to_writer(&mut out, k.as_ref());
                out.push(b':');
                out.extend_from_slice(v.get().as_bytes());
            }
            out.push(b'}');
            out
        }
        Err(_) => br#"{"include_usage":true}"#.to_vec(),
    }
}
