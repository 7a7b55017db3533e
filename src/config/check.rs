//! What every section's validation shares: the error (a field path and what is wrong with it)
//! and the checks of single fields. A leaf: it names nothing else of the crate, so each feature
//! can validate its own section with it while `config` composes the features.

use std::fmt;

use wildmatch::WildMatch;

/// Longest deadline of any call the filter makes (the global rate limit service, usage posts,
/// embeddings, the vector store): 60 s. A request waiting on a callout waits at most this.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Longest configured name that becomes a label value.
pub const MAX_LABEL_BYTES: usize = 128;

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A header name, lowercased: ASCII letters, digits and `-_.`.
pub(crate) fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let n = name.trim().to_ascii_lowercase();
    let valid = !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(err(field, format!("\"{name}\" is not a valid header name")));
    }
    Ok(n)
}

/// A configured name that becomes a metric label value (route, provider, consumer, listed
/// model): ASCII letters, digits and `-_.:/@+`, at most 128. With neither `=` nor `;` nor `,`,
/// no such name can spell a `stats_tags` pattern (`key=.=value;.;`) or end a value early.
pub(crate) fn label_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = (1..=MAX_LABEL_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "\"{}\" cannot be a metric label: use 1 to {MAX_LABEL_BYTES} ASCII letters, digits and -_.:/@+",
                name.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// A glob (`*`, `?`, `[...]`), when given; it must not be empty.
pub(crate) fn pattern(field: &str, p: Option<String>) -> Result<Option<WildMatch>, ConfigError> {
    match p {
        Some(p) if p.is_empty() => Err(err(field, "must not be empty")),
        Some(p) => Ok(Some(WildMatch::new(&p))),
        None => Ok(None),
    }
}

/// A number that must be greater than 0 when given; `default` when not.
pub(crate) fn positive<T: PartialOrd + Default + Copy>(
    field: &str,
    v: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        Some(x) if x <= T::default() => Err(err(field, "must be greater than 0")),
        Some(x) => Ok(x),
        None => Ok(default),
    }
}

/// A number in `1..=max` when given; `default` when not.
pub(crate) fn bounded<T: PartialOrd + Default + Copy + fmt::Display>(
    field: &str,
    v: Option<T>,
    default: T,
    max: T,
) -> Result<T, ConfigError> {
    at_most(field, positive(field, v, default)?, max)
}

/// `v`, unless it is over `max`: every size and count in the configuration has a maximum
/// the VM can afford (see the configuration reference in the README).
pub(crate) fn at_most<T: PartialOrd + Copy + fmt::Display>(
    field: &str,
    v: T,
    max: T,
) -> Result<T, ConfigError> {
    if v > max {
        Err(err(field, format!("must be at most {max}")))
    } else {
        Ok(v)
    }
}

/// A string that must not be blank when given.
pub(crate) fn non_empty(field: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(v) if v.trim().is_empty() => Err(err(field, "must not be empty")),
        other => Ok(other),
    }
}

/// A string that must not be blank (a cluster name...).
pub(crate) fn required(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(err(field, "must not be empty"))
    } else {
        Ok(())
    }
}
