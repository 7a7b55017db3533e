//! The OTLP/JSON pieces the usage events (logs) and the spans (traces) are written with:
//! attribute values, `KeyValue`s, 64-bit integers as strings, the resource and scope every post
//! opens with.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(u64),
    Bool(bool),
    Double(f64),
    /// An array of strings (`gen_ai.response.finish_reasons`).
    Strs(Vec<String>),
}

/// An OTLP `KeyValue` in the OTLP/JSON encoding (64-bit integers as strings).
pub struct KeyValue<'a>(pub &'a str, pub &'a Val);

impl Serialize for KeyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", self.0)?;
        m.serialize_entry("value", &AnyValue(self.1))?;
        m.end()
    }
}

/// An OTLP `AnyValue`.
struct AnyValue<'a>(&'a Val);

impl Serialize for AnyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self.0 {
            Val::Str(x) => m.serialize_entry("stringValue", x)?,
            // OTLP's intValue is an int64: a larger figure is sent as the largest.
            Val::Int(x) => m.serialize_entry("intValue", &Decimal((*x).min(i64::MAX as u64)))?,
            Val::Bool(x) => m.serialize_entry("boolValue", x)?,
            Val::Double(x) => m.serialize_entry("doubleValue", x)?,
            Val::Strs(xs) => m.serialize_entry("arrayValue", &Strings(xs))?,
        }
        m.end()
    }
}

/// An OTLP `ArrayValue` of strings.
struct Strings<'a>(&'a [String]);

impl Serialize for Strings<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Str<'a>(&'a str);
        impl Serialize for Str<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("stringValue", self.0)?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("values", &Seq(|| self.0.iter().map(|x| Str(x))))?;
        m.end()
    }
}

/// A 64-bit integer as a JSON string, as OTLP/JSON writes them.
pub struct Decimal(pub u64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A sequence serialized straight from an iterator.
pub struct Seq<F>(pub F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// The OTLP instrumentation scope.
struct Scope;

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("name", "llm-gateway")?;
        m.serialize_entry("version", env!("CARGO_PKG_VERSION"))?;
        m.end()
    }
}

/// The signal a post carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An `ExportLogsServiceRequest` (`logRecords`).
    Logs,
    /// An `ExportTraceServiceRequest` (`spans`).
    Traces,
}

/// What every OTLP post of `signal` starts and ends with: the export request with its resource
/// (`service.name` and the version, and `instance`, this Envoy's node id, when it has one) and
/// scope, up to the records' array.
pub fn frame(
    signal: Signal,
    service_name: &str,
    instance: Option<String>,
) -> (Vec<u8>, &'static [u8]) {
    let mut resource = vec![
        ("service.name", Val::Str(service_name.to_string())),
        (
            "service.version",
            Val::Str(env!("CARGO_PKG_VERSION").to_string()),
        ),
    ];
    if let Some(i) = instance.filter(|i| !i.is_empty()) {
        resource.push(("service.instance.id", Val::Str(i)));
    }
    let attrs = serde_json::to_string(&Seq(|| resource.iter().map(|(k, v)| KeyValue(k, v))))
        .unwrap_or_else(|_| "[]".into());
    let scope = serde_json::to_string(&Scope).unwrap_or_else(|_| "{}".into());
    let (open, scoped, records) = match signal {
        Signal::Logs => (LOGS_RESOURCE, LOGS_SCOPE, LOGS_RECORDS),
        Signal::Traces => (TRACES_RESOURCE, TRACES_SCOPE, TRACES_RECORDS),
    };
    let prefix = [open, &attrs, scoped, &scope, records].concat();
    (prefix.into_bytes(), END)
}

// The OTLP frame around the records, in pieces: the resource's attributes go after the first,
// the scope after the second, the records after the third; the last closes it all.
const LOGS_RESOURCE: &str = r#"{"resourceLogs":[{"resource":{"attributes":"#;
const LOGS_SCOPE: &str = r#"},"scopeLogs":[{"scope":"#;
const LOGS_RECORDS: &str = r#","logRecords":["#;
const TRACES_RESOURCE: &str = r#"{"resourceSpans":[{"resource":{"attributes":"#;
const TRACES_SCOPE: &str = r#"},"scopeSpans":[{"scope":"#;
const TRACES_RECORDS: &str = r#","spans":["#;
const END: &[u8] = b"]}]}]}";
