//! Every generated instance is checked with the `jsonschema` crate.

use serde_json::{json, Value};

use super::{check_strict, instance};

fn assert_valid(schema: &Value) -> Value {
    let validator = jsonschema::validator_for(schema)
        .unwrap_or_else(|e| panic!("not a schema ({e}): {schema}"));
    let mut first = None;
    for choice in 0..4 {
        let v = instance(schema, choice).unwrap_or_else(|e| panic!("{e}: {schema}"));
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{v} against {schema}: {errors:?}");
        assert_eq!(instance(schema, choice).unwrap(), v, "deterministic");
        first.get_or_insert(v);
    }
    first.unwrap()
}

#[test]
fn instances_validate() {
    let schemas = [
        json!({}),
        json!(true),
        json!({"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}, "temp": {"type": "number"},
            "sunny": {"type": "boolean"}, "none": {"type": "null"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "kind": {"const": "forecast"}, "maybe": {"type": ["null", "string"]},
            "any": {}}, "required": ["city", "days"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3}),
        json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}],
            "items": false}),
        json!({"type": "array", "maxItems": 0}),
        json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
        json!({"type": "string", "minLength": 40, "maxLength": 45}),
        json!({"type": "string", "maxLength": 2}),
        json!({"type": "object", "properties": Value::Object(
            ["date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6",
             "uuid", "uri"].iter()
                .map(|f| (f.to_string(), json!({"type": "string", "format": f}))).collect())}),
        json!({"type": "integer", "minimum": 10, "exclusiveMaximum": 12}),
        json!({"type": "integer", "multipleOf": 7, "minimum": 20}),
        json!({"type": "integer", "maximum": -3, "minimum": -9, "multipleOf": 4}),
        json!({"type": "integer", "exclusiveMinimum": 1.5, "maximum": 2}),
        json!({"type": "number", "exclusiveMinimum": 2, "maximum": 2.5}),
        json!({"type": "number", "minimum": 100}),
        json!({"type": "number", "exclusiveMaximum": 0}),
        json!({"type": "number", "multipleOf": 3, "minimum": 4}),
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        json!({"oneOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]}),
        json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer", "minimum": 3}}, "required": ["b"]}]}),
        json!({"type": "object", "additionalProperties": {"type": "integer"},
            "minProperties": 3}),
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"},
            "c": {"type": "string"}}, "required": ["c"], "maxProperties": 2}),
        json!({"type": "object", "required": ["x"]}),
        // What the openai SDK sends for a pydantic model (`client.chat.completions.parse`).
        json!({"$defs": {"Step": {"properties": {
                "explanation": {"title": "Explanation", "type": "string"},
                "output": {"title": "Output", "type": "string"}},
                "required": ["explanation", "output"], "title": "Step", "type": "object",
                "additionalProperties": false}},
            "properties": {
                "steps": {"items": {"$ref": "#/$defs/Step"}, "title": "Steps", "type": "array"},
                "final_answer": {"title": "Final Answer", "type": "string"}},
            "required": ["steps", "final_answer"], "title": "MathResponse", "type": "object",
            "additionalProperties": false}),
        // Recursive, strict style: optional means "or null".
        json!({"type": "object", "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#"}},
                "parent": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
                "next": {"type": ["object", "null"], "properties": {"n": {"$ref": "#"}}}},
            "required": ["name", "children", "parent", "next"], "additionalProperties": false}),
        json!({"$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"pos": {"type": "integer", "minimum": 1}},
            "type": "object", "properties": {"p": {"$ref": "#/definitions/pos"}},
            "required": ["p"]}),
        json!({"$schema": "http://json-schema.org/draft-04/schema#",
            "type": "number", "minimum": 5, "exclusiveMinimum": true, "maximum": 6}),
    ];
    for s in &schemas {
        assert_valid(s);
    }
}

#[test]
fn instances_read_naturally() {
    let s = json!({"type": "object", "properties": {
        "answer": {"type": "string"}, "confidence": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}},
        "required": ["answer", "confidence", "tags"], "additionalProperties": false});
    assert_eq!(
        assert_valid(&s),
        json!({"answer": "The quick brown", "confidence": 1.5, "tags": ["a"]})
    );
    // Each choice has its own words.
    assert_eq!(instance(&s, 1).unwrap()["answer"], "The brown fox");
    assert_eq!(instance(&json!({}), 0).unwrap(), json!({}));
}

#[test]
fn what_cannot_be_satisfied_is_an_error() {
    let cases = [
        (json!(false), "false"),
        (json!({"type": "string", "pattern": "^a+$"}), "'pattern'"),
        (json!({"not": {"type": "string"}}), "'not'"),
        (json!({"enum": []}), "enum"),
        (
            json!({"type": "integer", "minimum": 3, "maximum": 2}),
            "no integer",
        ),
        (
            json!({"type": "integer", "minimum": 1, "maximum": 4, "multipleOf": 5}),
            "no integer",
        ),
        (
            json!({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}),
            "no number",
        ),
        (
            json!({"type": "string", "minLength": 5, "maxLength": 4}),
            "string",
        ),
        (
            json!({"type": "array", "minItems": 3, "maxItems": 2}),
            "array",
        ),
        (
            json!({"type": "array", "prefixItems": [{}], "items": false, "minItems": 2}),
            "minItems",
        ),
        (json!({"$ref": "#/$defs/missing"}), "points nowhere"),
        (json!({"$ref": "other.json#/a"}), "local"),
        (
            json!({"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}),
            "deeper",
        ),
        (
            json!({"type": "object", "required": ["x"], "additionalProperties": false}),
            "\"x\"",
        ),
        (
            json!({"type": "array", "items": {"const": 1}, "minItems": 2, "uniqueItems": true}),
            "uniqueItems",
        ),
        (json!({"type": "matrix"}), "unknown type"),
        (json!("string"), "object or a boolean"),
    ];
    for (schema, want) in cases {
        let err = instance(&schema, 0).expect_err(&schema.to_string());
        assert!(err.contains(want), "{schema}: {err}");
    }
}

#[test]
fn strict_rules() {
    let ok = json!({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"],
              "additionalProperties": false},
        "c": {"type": "array", "items": {"type": "string"}}},
        "required": ["a", "c"], "additionalProperties": false});
    check_strict(&ok).unwrap();
    let cases = [
        (
            json!({"type": "string"}),
            r#"schema must be a JSON Schema of 'type: "object"', got 'type: "string"'."#,
        ),
        (
            json!({"properties": {}}),
            r#"schema must be a JSON Schema of 'type: "object"', got 'type: "None"'."#,
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"], "additionalProperties": false}),
            "In context=(), 'required' is required to be supplied and to be an array including \
          every key in properties. Missing 'b'.",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "object",
                "properties": {"x": {"type": "string"}}, "additionalProperties": false}},
                "required": ["a"], "additionalProperties": false}),
            "In context=('properties', 'a'), 'required' is required",
        ),
        (
            json!({"type": "object", "properties": {"l": {"type": "array", "items": {
                "type": "object", "properties": {}}}}, "required": ["l"],
                "additionalProperties": false}),
            "In context=('properties', 'l', 'items'), 'additionalProperties'",
        ),
    ];
    for (schema, want) in cases {
        let err = check_strict(&schema).expect_err(&schema.to_string());
        assert!(err.starts_with(want), "{schema}: {err}");
    }
}
