//! OpenAI wire types shared by the request and response sides.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::HttpError;

/// The one rule for which request bodies are JSON: exactly what `serde_json::Value` accepts.
///
/// Every path that reads a body (the request parser, the rewrite, both Anthropic translations,
/// the failover adaptation, the cache key) then agrees: a body that passes here parses into a
/// `Value` wherever one is built. The parser's raw skipping (`RawValue`, `IgnoredAny`) is not
/// enough: it skips numbers without range-checking them (`1e999`), strings without checking
/// their escapes (a lone surrogate `"\ud800"`) and nesting without the recursion limit, all of
/// which `Value` refuses. This pass builds nothing: it asks the deserializer for every value
/// (`deserialize_any`, as `Value` does) and drops it.
pub fn check(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Checked>(body).map(|_| ())
}

/// Any JSON value, checked as `Value` checks it and thrown away.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Checked, A::Error> {
        while a.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Checked, A::Error> {
        while a.next_key::<Checked>()?.is_some() {
            a.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

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
pub(crate) mod tests {
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

    /// JSON texts at the edges of what `Value` takes: numbers beyond f64, escapes, surrogates,
    /// nesting around the recursion limit, duplicates, bytes that are not UTF-8.
    pub(crate) const EDGES: &[&str] = &[
        "1e999",
        "-1e999",
        "1e308",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "1e-400",
        "-0",
        "18446744073709551616",
        "-9223372036854775809",
        "01",
        "1.",
        ".5",
        "NaN",
        "Infinity",
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\udc00""#,
        r#""\ud800\u0041""#,
        r#""\u00e9\n\t""#,
        r#""\x""#,
        "\"a\u{1}b\"",
        r#"{"a":1,"a":1e999}"#,
        r#"{"a":[1,2,{"b":null}]}"#,
        "[1,]",
        r#"{"a":1,}"#,
        "true false",
        "",
    ];

    /// `n` arrays deep around `inner`.
    pub(crate) fn nested(n: usize, inner: &str) -> String {
        format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
    }

    fn same_as_value(text: &[u8]) {
        let ours = check(text).map_err(|e| e.to_string());
        let value = serde_json::from_slice::<Value>(text)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(ours, value, "{:?}", String::from_utf8_lossy(text));
    }

    #[test]
    fn check_accepts_exactly_what_value_accepts() {
        for e in EDGES {
            same_as_value(e.as_bytes());
            same_as_value(format!(r#"{{"model":"m","x":{e}}}"#).as_bytes());
            same_as_value(format!("[{e}]").as_bytes());
        }
        for depth in [1, 126, 127, 128, 129, 1000] {
            same_as_value(nested(depth, "1").as_bytes());
            same_as_value(nested(depth, "1e999").as_bytes());
        }
        same_as_value(b"\"\xff\"");
        same_as_value(b"{\"\xc3\x28\":1}");
        // The skipping that the request parser does is what let these through.
        for e in ["1e999", r#""\ud800""#] {
            let body = format!(r#"{{"x":{e}}}"#);
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok());
            assert!(serde_json::from_str::<Box<serde_json::value::RawValue>>(&body).is_ok());
            assert!(check(body.as_bytes()).is_err(), "{e}");
        }
        let deep = nested(1000, "1");
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(&deep).is_ok());
        assert!(check(deep.as_bytes()).is_err());
    }

    /// A JSON-ish text built from the edge cases, valid or not.
    pub(crate) fn jsonish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            proptest::sample::select(EDGES).prop_map(str::to_string),
            "-?[0-9]{1,3}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{1,4})?",
            "\"([a-z]|\\\\u[dD][89abAB][0-9a-f]{2}|\\\\u00[0-9a-f]{2}|\\\\[nt\"x])*\"",
            Just("null".to_string()),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(("[a-c]", inner), 0..4).prop_map(|v| {
                    let members: Vec<String> =
                        v.into_iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn check_is_value_on_generated_texts(text in jsonish()) {
            same_as_value(text.as_bytes());
        }

        #[test]
        fn check_is_value_on_any_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            same_as_value(&b);
        }
    }
}
