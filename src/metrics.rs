//! Metric updates as the core hands them to the shell, and the names they go under.
//!
//! Metric names carry their labels Istio-style (`name.key=.=value;.;`), which the `stats_tags`
//! block shipped in `envoy/` turns into Prometheus labels; label values are sanitised so they
//! cannot break that encoding. The names themselves are in `names::metric`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One update of one metric: a counter's increment, a gauge's value, a histogram's sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricUpdate {
    pub kind: Kind,
    pub name: String,
    pub value: u64,
}

impl MetricUpdate {
    pub fn counter(name: String, value: u64) -> MetricUpdate {
        MetricUpdate {
            kind: Kind::Counter,
            name,
            value,
        }
    }

    pub fn gauge(name: String, value: u64) -> MetricUpdate {
        MetricUpdate {
            kind: Kind::Gauge,
            name,
            value,
        }
    }

    pub fn histogram(name: String, value: u64) -> MetricUpdate {
        MetricUpdate {
            kind: Kind::Histogram,
            name,
            value,
        }
    }
}

/// Build a stat name with labels: `name.k1=.=v1;.;k2=.=v2;.;`.
pub fn stat_name(name: &str, tags: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(name.len() + tags.len() * 32);
    s.push_str(name);
    s.push('.');
    for (k, v) in tags {
        s.push_str(k);
        s.push_str("=.=");
        let v = if v.is_empty() { "none" } else { v };
        for c in v.chars().take(128) {
            // Values come from the configuration (see `config::label_name`); as a second line of
            // defence, `;` would end the value early, `=` could spell another tag's `=.=`, and
            // control characters do not belong in a stat name.
            s.push(if c == ';' || c == '=' || c.is_control() {
                '_'
            } else {
                c
            });
        }
        s.push_str(";.;");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_labels() {
        assert_eq!(
            stat_name("m", &[("a", "gpt-4.1"), ("b", ""), ("c", "x;.;y\n")]),
            "m.a=.=gpt-4.1;.;b=.=none;.;c=.=x_._y_;.;"
        );
    }
}
