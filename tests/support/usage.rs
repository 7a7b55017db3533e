//! Usage as each place reports it, to compare with the provider's: the token counters
//! (`llm_gateway_tokens_total`), the usage events a collector received, the access log.

use serde_json::Value;

use super::{prom_sum, Collector, Gateway};

/// Token figures of one request: input (cached included), output (reasoning included), cached
/// input, reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl Figures {
    pub fn minus(self, o: Figures) -> Figures {
        Figures {
            input: self.input - o.input,
            output: self.output - o.output,
            cached: self.cached - o.cached,
            reasoning: self.reasoning - o.reasoning,
        }
    }
}

/// The `llm_gateway_tokens_total` counters of one provider, by token type.
pub fn metered(gw: &Gateway, provider: &str) -> Figures {
    let prom = gw.prometheus();
    let n = |ty: &str| {
        prom_sum(
            &prom,
            "llm_gateway_tokens_total",
            &[
                ("gen_ai_provider_name", provider),
                ("gen_ai_token_type", ty),
            ],
        ) as u64
    };
    Figures {
        input: n("input"),
        output: n("output"),
        cached: n("cached_input"),
        reasoning: n("reasoning"),
    }
}

/// The usage event (JSON format) of request `id`, waiting (up to 10 s) for it; there must be
/// exactly one.
pub fn event_of(sink: &Collector, id: &str) -> Value {
    let events = |posts: &[Value]| -> Vec<Value> {
        posts
            .iter()
            .filter_map(|p| serde_json::from_str::<Value>(p["body"].as_str()?).ok())
            .flat_map(|v| v.as_array().cloned().unwrap_or_default())
            .collect()
    };
    let posts = sink.wait_for(10, |p| events(p).iter().any(|e| e["request_id"] == id));
    let mut mine: Vec<Value> = events(&posts)
        .into_iter()
        .filter(|e| e["request_id"] == id)
        .collect();
    assert_eq!(mine.len(), 1, "one event for {id}: {posts:?}");
    mine.remove(0)
}

/// The figures of a usage event.
pub fn event_figures(e: &Value) -> Figures {
    let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("no {k} in {e}"));
    Figures {
        input: n("prompt_tokens"),
        output: n("completion_tokens"),
        cached: n("cached_tokens"),
        reasoning: n("reasoning_tokens"),
    }
}

/// The access-log line of the request sent with `x-request-id: id`, waiting (up to 10 s) for it.
pub fn log_of(gw: &Gateway, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = gw.access_log(0);
        if let Some(line) = log.iter().find(|l| l["request_id"] == id) {
            return line.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for {id}: {log:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The figures of an access-log line (its numbers are strings).
pub fn logged_figures(line: &Value) -> Figures {
    let n = |k: &str| -> u64 {
        line[k]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    Figures {
        input: n("prompt_tokens"),
        output: n("completion_tokens"),
        cached: n("cached_tokens"),
        reasoning: n("reasoning_tokens"),
    }
}

/// The attributes of an OTLP log record or span, as the collector's `MessageToDict` gives them,
/// by key: an int64 (a string there) as a number, a string array as an array, the rest as the
/// JSON value it holds.
pub fn otlp_attributes(item: &Value) -> std::collections::HashMap<String, Value> {
    item["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let v = &a["value"];
            let v = match (v.get("intValue"), v.get("arrayValue")) {
                (Some(i), _) => serde_json::json!(i.as_str().and_then(|s| s.parse::<u64>().ok())),
                (_, Some(arr)) => arr["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x["stringValue"].clone())
                    .collect(),
                _ => v
                    .as_object()
                    .and_then(|o| o.values().next())
                    .cloned()
                    .unwrap_or_default(),
            };
            (a["key"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect()
}
