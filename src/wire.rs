//! OpenAI wire types shared by the request and response sides.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::HttpError;

/// A JSON request body (OpenAI's or Anthropic's: both name the model at the top level) with
/// its `model` set to `model`; the body itself when it already names it.
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, HttpError> {
    let mut req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    if req.get("model").and_then(Value::as_str) == Some(model) {
        return Ok(body.to_vec());
    }
    req.insert("model".into(), model.into());
    serde_json::to_vec(&req).map_err(|e| HttpError::invalid_json(&e.to_string()))
}

/// A token count a provider sent, saturated into a `u64`: a float or a number beyond `u64`
/// (`1e20`) is the nearest count (the largest, for one too large), a negative one is 0.
/// `None` when it is not a number.
pub fn count(v: &Value) -> Option<u64> {
    match v.as_u64() {
        Some(n) => Some(n),
        None => v.as_i64().map(|_| 0).or_else(|| v.as_f64().map(f64_count)),
    }
}

/// A float as a count: Rust's `as` saturates (NaN is 0, negatives are 0).
fn f64_count(f: f64) -> u64 {
    f as u64
}

/// `count` as a serde field deserializer, for typed usage objects (`null` is absent).
pub fn de_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a token count")
        }
        fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(u64::try_from(n).unwrap_or(0)))
        }
        fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
            Ok(Some(f64_count(f)))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// A tool call in a message (request history) or in a response or stream delta.
#[derive(Deserialize)]
pub struct ToolCall<'a> {
    #[serde(default, borrow)]
    pub function: Option<Function<'a>>,
}

/// A function call: its name and its JSON arguments (as text, possibly a stream fragment).
#[derive(Deserialize)]
pub struct Function<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

impl Function<'_> {
    /// The texts a tokenizer counts: name and arguments, where present.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        [&self.name, &self.arguments]
            .into_iter()
            .flatten()
            .map(|s| s.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn with_model_sets_the_model_and_keeps_the_rest() {
        let body = br#"{"model":"a","max_tokens":5}"#;
        let w: Value = serde_json::from_slice(&with_model(body, "b").unwrap()).unwrap();
        assert_eq!(w, json!({"model": "b", "max_tokens": 5}));
        assert_eq!(with_model(body, "a").unwrap(), body);
        assert_eq!(with_model(b"[1]", "a").unwrap_err().status, 400);
    }

    #[test]
    fn provider_counts_saturate() {
        let c = |s: &str| count(&serde_json::from_str(s).unwrap());
        assert_eq!(c("7"), Some(7));
        assert_eq!(c("18446744073709551615"), Some(u64::MAX));
        assert_eq!(c("18446744073709551616"), Some(u64::MAX));
        assert_eq!(c("1e30"), Some(u64::MAX));
        assert_eq!(c("12.0"), Some(12));
        assert_eq!(c("-5"), Some(0));
        assert_eq!(c("-1e30"), Some(0));
        assert_eq!(c("\"7\""), None);
        assert_eq!(c("null"), None);
        #[derive(serde::Deserialize)]
        struct U {
            #[serde(default, deserialize_with = "de_count")]
            n: Option<u64>,
        }
        let d = |s: &str| serde_json::from_str::<U>(s).map(|u| u.n).ok();
        // The typed reading agrees with `count` on every case.
        for v in [
            "7",
            "18446744073709551615",
            "18446744073709551616",
            "1e30",
            "12.0",
            "-5",
            "-1e30",
            "null",
        ] {
            assert_eq!(d(&format!("{{\"n\":{v}}}")), Some(c(v)), "{v}");
        }
        assert_eq!(d("{}"), Some(None));
        assert_eq!(d(r#"{"n":"7"}"#), None);
    }
}
