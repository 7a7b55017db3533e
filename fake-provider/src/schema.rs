//! Structured outputs: a deterministic instance of a JSON schema (what a `response_format` of
//! type `json_schema` answers), and OpenAI's checks of a strict schema.
//!
//! The generator covers what OpenAI's structured outputs accept: `type` (one or a list, the
//! first that is not `"null"` wins), `object` with `properties` / `required` /
//! `additionalProperties` / `minProperties` / `maxProperties`, `array` with `items` /
//! `prefixItems` / `minItems` / `maxItems`, `string` with `minLength` / `maxLength` and the
//! common `format`s, `number` and `integer` with their bounds and `multipleOf`, `boolean`,
//! `null`, `enum` and `const` (the first value), `anyOf` / `oneOf` (the first branch), `allOf`
//! (merged) and local `$ref`s (`#/$defs/...`, `#/definitions/...`, `#`). What it cannot
//! satisfy (`pattern`, `not`, `contains`, unique items of one kind, empty ranges) is an error,
//! never an instance that does not validate. The tests validate every instance with the
//! `jsonschema` crate.

use serde_json::{Map, Value};

use crate::tokens;

/// Deepest nesting followed (a recursive `$ref` that requires itself ends here).
const MAX_DEPTH: usize = 32;
/// Below this depth optional properties are filled in too; deeper, only required ones.
const OPTIONAL_DEPTH: usize = 6;
/// Largest array generated for a `minItems`.
const MAX_ITEMS: u64 = 64;
/// Longest string generated for a `minLength`.
const MAX_STRING: u64 = 4096;

/// A deterministic instance of `schema` for choice `choice` (whose strings have that choice's
/// words, so the choices of one answer differ).
pub fn instance(schema: &Value, choice: u32) -> Result<Value, String> {
    Gen {
        root: schema,
        words: tokens::choice_pieces(choice, 3).concat(),
    }
    .value(schema, 0)
}

struct Gen<'a> {
    root: &'a Value,
    /// The text strings start from.
    words: String,
}

fn num(s: &Map<String, Value>, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn count(s: &Map<String, Value>, key: &str) -> Option<u64> {
    s.get(key).and_then(Value::as_u64)
}

impl Gen<'_> {
    fn resolve(&self, reference: &str) -> Result<&Value, String> {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("only local $refs are supported, not {reference:?}"))?;
        self.root
            .pointer(pointer)
            .ok_or_else(|| format!("$ref {reference:?} points nowhere"))
    }

    /// `s` with its `allOf` branches and the first `anyOf` / `oneOf` branch merged in, and a
    /// `$ref` replaced by its target (merged with the other keywords).
    fn flatten(&self, s: &Map<String, Value>, depth: usize) -> Result<Map<String, Value>, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} levels (a recursive $ref?)"
            ));
        }
        let mut out = s.clone();
        let mut branches = Vec::new();
        if let Some(r) = out.remove("$ref") {
            let r = r.as_str().ok_or("$ref must be a string")?;
            branches.push(self.resolve(r)?.clone());
        }
        if let Some(all) = out.remove("allOf") {
            let all = all.as_array().ok_or("allOf must be an array")?;
            branches.extend(all.iter().cloned());
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(any) = out.remove(key) {
                let any = any
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("{key} must be a non-empty array"))?;
                // Deep down, a null branch ends a recursive structure.
                let null = any
                    .iter()
                    .find(|b| b.get("type") == Some(&Value::from("null")));
                let chosen = match null {
                    Some(null) if depth >= OPTIONAL_DEPTH => null,
                    _ => &any[0],
                };
                branches.push(chosen.clone());
            }
        }
        for b in branches {
            let b = match b {
                Value::Bool(true) => continue,
                Value::Object(b) => self.flatten(&b, depth + 1)?,
                _ => return Err("the schema `false` has no instance".into()),
            };
            merge(&mut out, b);
        }
        Ok(out)
    }

    fn value(&self, schema: &Value, depth: usize) -> Result<Value, String> {
        let s = match schema {
            Value::Bool(true) => return Ok(Value::Object(Map::new())),
            Value::Bool(false) => return Err("the schema `false` has no instance".into()),
            Value::Object(s) => self.flatten(s, depth)?,
            _ => return Err("a schema must be an object or a boolean".into()),
        };
        for unsupported in ["not", "contains", "pattern", "patternProperties", "if"] {
            if s.contains_key(unsupported) {
                return Err(format!("'{unsupported}' is not supported"));
            }
        }
        if let Some(v) = s.get("const") {
            return Ok(v.clone());
        }
        if let Some(e) = s.get("enum") {
            return e
                .as_array()
                .and_then(|e| e.first())
                .cloned()
                .ok_or_else(|| "enum must be a non-empty array".into());
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => {
                let mut names = ts.iter().filter_map(Value::as_str);
                let deep_null = depth >= OPTIONAL_DEPTH && names.clone().any(|t| t == "null");
                match names.clone().find(|t| *t != "null") {
                    Some(_) if deep_null => "null",
                    Some(t) => t,
                    None => names.next().ok_or("type must name a type")?,
                }
            }
            Some(_) => return Err("type must be a string or an array".into()),
            None => infer_type(&s),
        };
        match ty {
            "object" => self.object(&s, depth),
            "array" => self.array(&s, depth),
            "string" => self.string(&s),
            "integer" => integer(&s),
            "number" => number(&s),
            "boolean" => Ok(Value::Bool(true)),
            "null" => Ok(Value::Null),
            other => Err(format!("unknown type {other:?}")),
        }
    }

    fn object(&self, s: &Map<String, Value>, depth: usize) -> Result<Value, String> {
        let empty = Map::new();
        let props = match s.get("properties") {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => return Err("properties must be an object".into()),
        };
        let required: Vec<&str> = match s.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err("required must be an array".into()),
        };
        let extra = s.get("additionalProperties");
        let extra_allowed = extra != Some(&Value::Bool(false));
        let extra_schema = extra
            .filter(|e| e.is_object())
            .cloned()
            .unwrap_or(Value::Bool(true));
        let max = count(s, "maxProperties").unwrap_or(u64::MAX);
        let mut out = Map::new();
        for name in &required {
            let v = match props.get(*name) {
                Some(p) => self.value(p, depth + 1)?,
                None if extra_allowed => self.value(&extra_schema, depth + 1)?,
                None => return Err(format!("required property {name:?} is not allowed")),
            };
            out.insert((*name).to_owned(), v);
        }
        if depth < OPTIONAL_DEPTH {
            for (name, p) in props {
                if (out.len() as u64) >= max {
                    break;
                }
                if !out.contains_key(name) {
                    out.insert(name.clone(), self.value(p, depth + 1)?);
                }
            }
        }
        let min = count(s, "minProperties").unwrap_or(0);
        let mut i = 1;
        while (out.len() as u64) < min.min(MAX_ITEMS) {
            if !extra_allowed {
                return Err("minProperties needs more properties than the schema allows".into());
            }
            out.insert(format!("extra_{i}"), self.value(&extra_schema, depth + 1)?);
            i += 1;
        }
        if (out.len() as u64) > max || (out.len() as u64) < min {
            return Err("no object meets minProperties, maxProperties and required".into());
        }
        Ok(Value::Object(out))
    }

    fn array(&self, s: &Map<String, Value>, depth: usize) -> Result<Value, String> {
        let prefix: &[Value] = match s.get("prefixItems") {
            None => &[],
            Some(Value::Array(p)) => p,
            Some(_) => return Err("prefixItems must be an array".into()),
        };
        let items = s.get("items");
        let more_allowed = items != Some(&Value::Bool(false));
        let min = count(s, "minItems").unwrap_or(0);
        let max = count(s, "maxItems").unwrap_or(u64::MAX);
        if min > max || min > MAX_ITEMS {
            return Err(format!("cannot make an array of {min}..={max} items"));
        }
        // One item unless deep down (where a recursive structure must end).
        let wanted = if depth < OPTIONAL_DEPTH {
            min.max(1)
        } else {
            min
        };
        let wanted = wanted.min(max) as usize;
        let len = if more_allowed {
            wanted.max(prefix.len().min(max as usize))
        } else {
            prefix.len().min(max as usize)
        };
        if (len as u64) < min {
            return Err("minItems needs more items than the schema allows".into());
        }
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            let schema = prefix.get(i).or(items).unwrap_or(&Value::Bool(true));
            out.push(self.value(schema, depth + 1)?);
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, v) in out.iter().enumerate() {
                if out[..i].contains(v) {
                    return Err(
                        "uniqueItems with several items of one kind is not supported".into(),
                    );
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn string(&self, s: &Map<String, Value>) -> Result<Value, String> {
        let mut text = match s.get("format").and_then(Value::as_str) {
            Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
            Some("date") => "2026-01-01".to_owned(),
            Some("time") => "12:00:00Z".to_owned(),
            Some("duration") => "P1D".to_owned(),
            Some("email") => "user@example.com".to_owned(),
            Some("hostname") => "example.com".to_owned(),
            Some("ipv4") => "192.0.2.1".to_owned(),
            Some("ipv6") => "2001:db8::1".to_owned(),
            Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
            Some("uri") => "https://example.com/".to_owned(),
            _ => self.words.clone(),
        };
        let min = count(s, "minLength").unwrap_or(0);
        let max = count(s, "maxLength").unwrap_or(u64::MAX);
        if min > max || min > MAX_STRING {
            return Err(format!("cannot make a string of {min}..={max} characters"));
        }
        // The words are ASCII: bytes are characters.
        while (text.len() as u64) < min {
            text.push_str(" and so on");
        }
        text.truncate(text.len().min(max.max(min) as usize));
        Ok(Value::String(text))
    }
}

/// The type a schema without `type` describes, from its keywords.
fn infer_type(s: &Map<String, Value>) -> &'static str {
    let has = |keys: &[&str]| keys.iter().any(|k| s.contains_key(*k));
    if has(&[
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
    ]) {
        "array"
    } else if has(&["minLength", "maxLength", "format"]) {
        "string"
    } else if has(&[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]) {
        "number"
    } else {
        "object"
    }
}

/// Merge the keywords of `b` into `out`: properties and required are united, other keywords
/// of `b` are added where `out` has none.
fn merge(out: &mut Map<String, Value>, b: Map<String, Value>) {
    for (k, v) in b {
        match (k.as_str(), out.get_mut(&k), v) {
            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                for (name, p) in theirs {
                    mine.entry(name).or_insert(p);
                }
            }
            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                for r in theirs {
                    if !mine.contains(&r) {
                        mine.push(r);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, v) => {
                out.insert(k, v);
            }
        }
    }
}

/// The bounds of a number schema: (lower, exclusive), (upper, exclusive), the tighter of the
/// plain and the exclusive keyword. Draft 4's boolean `exclusiveMinimum` / `exclusiveMaximum`
/// are understood too.
#[allow(clippy::type_complexity)]
fn bounds(s: &Map<String, Value>) -> (Option<(f64, bool)>, Option<(f64, bool)>) {
    let side = |plain: &str, exclusive: &str, lower: bool| {
        let plain = num(s, plain);
        match s.get(exclusive) {
            Some(Value::Bool(true)) => plain.map(|p| (p, true)),
            Some(e) if e.is_number() => {
                let e = e.as_f64().unwrap_or(0.0);
                match plain {
                    Some(p) if (lower && p > e) || (!lower && p < e) => Some((p, false)),
                    _ => Some((e, true)),
                }
            }
            _ => plain.map(|p| (p, false)),
        }
    };
    (
        side("minimum", "exclusiveMinimum", true),
        side("maximum", "exclusiveMaximum", false),
    )
}

fn integer(s: &Map<String, Value>) -> Result<Value, String> {
    let (lo, hi) = bounds(s);
    let lo = lo.map(|(v, ex)| if ex { v.floor() + 1.0 } else { v.ceil() });
    let hi = hi.map(|(v, ex)| if ex { v.ceil() - 1.0 } else { v.floor() });
    let step = match num(s, "multipleOf") {
        None => 1.0,
        Some(m) if m > 0.0 && m.fract() == 0.0 => m,
        Some(m) => return Err(format!("multipleOf {m} of an integer is not supported")),
    };
    // 1 when allowed, else the nearest allowed value.
    let start = match (lo, hi) {
        (Some(l), _) if l > 1.0 => l,
        (_, Some(h)) if h < 1.0 => h,
        _ => 1.0,
    };
    let mut v = (start / step).ceil() * step;
    if hi.is_some_and(|h| v > h) {
        v = (start / step).floor() * step;
    }
    if lo.is_some_and(|l| v < l) || hi.is_some_and(|h| v > h) || v.abs() > 9.0e15 {
        return Err("no integer meets minimum, maximum and multipleOf".into());
    }
    Ok(Value::from(v as i64))
}

fn number(s: &Map<String, Value>) -> Result<Value, String> {
    if let Some(m) = num(s, "multipleOf") {
        if m > 0.0 && m.fract() == 0.0 {
            return integer(s);
        }
        return Err(format!("multipleOf {m} of a number is not supported"));
    }
    let ok = |v: f64, (b, ex): (f64, bool), above: bool| match (above, ex) {
        (true, true) => v > b,
        (true, false) => v >= b,
        (false, true) => v < b,
        (false, false) => v <= b,
    };
    let (lo, hi) = bounds(s);
    let fits = |v: f64| lo.is_none_or(|l| ok(v, l, true)) && hi.is_none_or(|h| ok(v, h, false));
    let candidates = [
        Some(1.5),
        lo.map(|(l, ex)| if ex { l + 1.0 } else { l }),
        hi.map(|(h, ex)| if ex { h - 1.0 } else { h }),
        lo.zip(hi).map(|((l, _), (h, _))| (l + h) / 2.0),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|v| fits(*v))
        .and_then(|v| serde_json::Number::from_f64(v).map(Value::Number))
        .ok_or_else(|| "no number meets minimum and maximum".into())
}

/// Python's repr of a tuple of path parts, as OpenAI's messages show a schema location.
fn context(path: &[String]) -> String {
    match path {
        [] => "()".to_owned(),
        [one] => format!("({one},)"),
        more => format!("({})", more.join(", ")),
    }
}

/// OpenAI's rules for a strict schema: the root is an object, and every object schema has
/// `additionalProperties: false` and lists every property in `required`. The reason, in
/// OpenAI's words, when a rule is broken.
pub fn check_strict(schema: &Value) -> Result<(), String> {
    let root_type = schema.get("type").and_then(Value::as_str);
    if root_type != Some("object") {
        let got = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(other) => other.to_string(),
            None => "None".to_owned(),
        };
        return Err(format!(
            "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
        ));
    }
    strict_walk(schema, &mut Vec::new())
}

fn strict_walk(schema: &Value, path: &mut Vec<String>) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    let is_object = s.get("type").and_then(Value::as_str) == Some("object")
        || s.get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "object"))
        || s.contains_key("properties");
    if is_object {
        if s.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "In context={}, 'additionalProperties' is required to be supplied and to be \
                 false.",
                context(path)
            ));
        }
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            if let Some(missing) = props.keys().find(|k| !required.contains(&k.as_str())) {
                return Err(format!(
                    "In context={}, 'required' is required to be supplied and to be an array \
                     including every key in properties. Missing '{missing}'.",
                    context(path)
                ));
            }
        }
    }
    let mut visit = |parts: &[&str], v: &Value| {
        let n = path.len();
        path.extend(parts.iter().map(|p| format!("'{p}'")));
        let r = strict_walk(v, path);
        path.truncate(n);
        r
    };
    for key in ["properties", "$defs", "definitions"] {
        if let Some(m) = s.get(key).and_then(Value::as_object) {
            for (name, v) in m {
                visit(&[key, name], v)?;
            }
        }
    }
    if let Some(items) = s.get("items") {
        visit(&["items"], items)?;
    }
    for key in ["anyOf", "prefixItems"] {
        for (i, v) in s
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let n = path.len();
            path.push(format!("'{key}'"));
            path.push(i.to_string());
            let r = strict_walk(v, path);
            path.truncate(n);
            r?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
