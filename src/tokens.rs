//! Token counting: which encoding a model uses, and the chat-format overhead.
//!
//! The counter is exact and count-only: `split` is each encoding's pre-tokenizer (tiktoken's
//! pattern, scanned by hand, proven equal to fancy-regex in tests and fuzzing), `bpe` merges each
//! piece with tiktoken's rules over rank tables laid out at build time (static data: no start-up
//! work in a VM), and tiktoken-rs stays the oracle in tests. Only o200k_base and cl100k_base are
//! compiled in: every current OpenAI model uses one of them. Text is encoded as ordinary text (special-token
//! strings in a prompt count as the plain text they are, as OpenAI's API does).
//!
//! Chat prompts follow OpenAI's published formula: 3 tokens per message, the tokens of every
//! string field, 1 more when a message has a `name`, and 3 to prime the reply. For plain text
//! messages this is what OpenAI reports as `prompt_tokens`; images, tool definitions and tool
//! calls are counted approximately and the count is flagged as estimated.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use std::collections::BTreeMap;

use hashbrown::HashMap;
use serde::Deserialize;
use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use wildmatch::WildMatch;

use crate::config::check::{bounded, err, ConfigError};

pub mod bpe;
mod rank_hash;
// The exact pre-tokenizers of the counter: tiktoken's patterns without a regex engine.
pub(crate) mod split;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "o200k_base" => Some(Encoding::O200kBase),
            "cl100k_base" => Some(Encoding::Cl100kBase),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// Tokens in `text`, encoded as ordinary text. Long texts go through the VM's count cache.
    pub fn count(self, text: &str) -> u64 {
        match text.len() {
            0 => 0,
            n if n >= CACHE_MIN_BYTES => CACHE.with(|c| c.borrow_mut().count(self, text)),
            _ => self.count_uncached(text),
        }
    }

    /// Tokens in `text`, bypassing the cache (benchmarks measure the tokenizer with this).
    pub fn count_uncached(self, text: &str) -> u64 {
        let piece = |p: &str| bpe::count_piece(self, p.as_bytes()) as u64;
        match self {
            Encoding::O200kBase => split::o200k(text).map(piece).sum(),
            Encoding::Cl100kBase => split::cl100k(text).map(piece).sum(),
        }
    }
}

/// Counts the texts of one request at a bounded cost: exactly while the texts counted so far fit
/// in the budget (`tokenizer.max_exact_bytes`); past it, a text counts as its length in bytes,
/// an upper bound (every token is at least one byte), and the count is flagged as estimated.
/// A worker so never spends more than the budget's worth of tokenizing on one request.
pub struct Counter {
    enc: Encoding,
    left: std::cell::Cell<usize>,
    bounded: std::cell::Cell<bool>,
}

impl Counter {
    pub fn new(enc: Encoding, budget_bytes: usize) -> Counter {
        Counter {
            enc,
            left: std::cell::Cell::new(budget_bytes),
            bounded: std::cell::Cell::new(false),
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.enc
    }

    /// Tokens in `text`, or its upper bound once the budget is spent.
    pub fn count(&self, text: &str) -> u64 {
        match self.left.get().checked_sub(text.len()) {
            Some(left) => {
                self.left.set(left);
                self.enc.count(text)
            }
            None => {
                self.bounded.set(true);
                text.len() as u64
            }
        }
    }

    /// Whether some text was bounded rather than counted.
    pub fn bounded(&self) -> bool {
        self.bounded.get()
    }
}

/// Default `tokenizer.max_exact_bytes`: prompt text counted exactly per request.
pub const DEFAULT_MAX_EXACT_BYTES: usize = 64 * 1024;
/// Largest `tokenizer.max_exact_bytes` accepted.
pub const MAX_EXACT_BYTES_LIMIT: usize = 8 * 1024 * 1024;

/// `tokenizer` in the plugin configuration.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTokenizer {
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, String>,
    #[serde(default)]
    preload: Vec<String>,
    #[serde(default)]
    max_exact_bytes: Option<usize>,
}

#[derive(Debug)]
pub struct TokenizerConfig {
    /// Encoding for models tiktoken does not know; `None` means "do not count".
    pub fallback: Option<Encoding>,
    /// Explicit model → encoding overrides, tried first, in order.
    pub models: Vec<(WildMatch, Option<Encoding>)>,
    /// Prompt text counted exactly per request; beyond it, bounded (see `Counter`).
    pub max_exact_bytes: usize,
}

impl TokenizerConfig {
    /// Validate `tokenizer`.
    pub fn parse(t: RawTokenizer) -> Result<TokenizerConfig, ConfigError> {
        let fallback = match t.fallback {
            Some(f) => configured("tokenizer.fallback", &f)?,
            None => Some(Encoding::O200kBase),
        };
        let mut models = Vec::with_capacity(t.models.len());
        for (pat, enc) in t.models {
            let e = configured(&format!("tokenizer.models.{pat}"), &enc)?;
            models.push((WildMatch::new(&pat), e));
        }
        let max_exact_bytes = bounded(
            "tokenizer.max_exact_bytes",
            t.max_exact_bytes,
            DEFAULT_MAX_EXACT_BYTES,
            MAX_EXACT_BYTES_LIMIT,
        )?;
        // `tokenizer.preload` is checked and otherwise ignored: older configurations set it,
        // and there is nothing to load (the rank tables are static data of the module).
        for (i, name) in t.preload.iter().enumerate() {
            configured(&format!("tokenizer.preload[{i}]"), name)?;
        }
        Ok(TokenizerConfig {
            fallback,
            models,
            max_exact_bytes,
        })
    }
}

/// The encoding a configuration field names; `none` (do not count) is `None`.
fn configured(field: &str, name: &str) -> Result<Option<Encoding>, ConfigError> {
    if name == "none" {
        return Ok(None);
    }
    Encoding::from_name(name).map(Some).ok_or_else(|| {
        err(
            field,
            format!("unknown encoding \"{name}\" (o200k_base, cl100k_base or none)"),
        )
    })
}

/// Texts shorter than this are tokenized every time; longer ones are remembered.
pub const CACHE_MIN_BYTES: usize = 256;
/// Entries per cache generation (two generations are kept: at most twice this many).
pub const CACHE_ENTRIES: usize = 4096;

thread_local! {
    // One per VM (a VM is single-threaded).
    static CACHE: RefCell<CountCache> = RefCell::new(CountCache::default());
}

/// Token counts of long texts seen recently, so what clients resend on every turn (system
/// prompts, conversation history, agent context) is tokenized once per VM. The key is the
/// encoding, the text's length and a keyed SipHash of it (secret per-VM keys, so a client
/// cannot craft a collision); memory is bounded by two generations of `CACHE_ENTRIES` entries,
/// the older one dropped when the newer fills (an approximate LRU without bookkeeping).
pub struct CountCache {
    hasher: RandomState,
    young: HashMap<(Encoding, usize, u64), u64>,
    old: HashMap<(Encoding, usize, u64), u64>,
    pub hits: u64,
    pub misses: u64,
}

impl Default for CountCache {
    fn default() -> Self {
        CountCache {
            hasher: RandomState::new(),
            young: HashMap::new(),
            old: HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }
}

impl CountCache {
    pub fn count(&mut self, enc: Encoding, text: &str) -> u64 {
        let key = (enc, text.len(), self.hasher.hash_one(text));
        if let Some(&n) = self.young.get(&key) {
            self.hits += 1;
            return n;
        }
        if let Some(n) = self.old.remove(&key) {
            self.hits += 1;
            self.insert(key, n);
            return n;
        }
        self.misses += 1;
        let n = enc.count_uncached(text);
        self.insert(key, n);
        n
    }

    fn insert(&mut self, key: (Encoding, usize, u64), n: u64) {
        if self.young.len() >= CACHE_ENTRIES {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, n);
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which encoding to count `model` with, and whether that choice is a guess.
/// Returns `None` when counting is disabled for the model.
pub fn encoding_for_model(model: &str, cfg: &TokenizerConfig) -> Option<(Encoding, bool)> {
    for (pat, enc) in &cfg.models {
        if pat.matches(model) {
            return enc.map(|e| (e, false));
        }
    }
    let known = get_tokenizer(model).or_else(|| {
        // Names tiktoken-rs 0.12 does not map yet.
        if model == "gpt-4.5" || model == "o4" || model.starts_with("o4-") {
            Some(Tokenizer::O200kBase)
        } else {
            None
        }
    });
    match known {
        Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Some((Encoding::O200kBase, false)),
        Some(Tokenizer::Cl100kBase) => Some((Encoding::Cl100kBase, false)),
        _ => cfg.fallback.map(|e| (e, true)),
    }
}

/// Tokens of a chat message's role. The standard roles are one token in both encodings (a
/// test checks it), which spares a tokenizer call per message; other roles are counted.
pub fn role_tokens(enc: Encoding, role: &str) -> u64 {
    match role {
        "system" | "user" | "assistant" | "tool" | "developer" | "function" => 1,
        other => enc.count(other),
    }
}

/// A token count and whether it is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub tokens: u64,
    pub estimated: bool,
}

impl Count {
    pub fn add(&mut self, other: Count) {
        self.tokens = self.tokens.saturating_add(other.tokens);
        self.estimated |= other.estimated;
    }
}

/// Per-message framing tokens in OpenAI's chat format.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Extra tokens when a message carries a `name`.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING: u64 = 3;
/// OpenAI's charge for a low-detail image; used for every image since its size is unknown here.
pub const IMAGE_TOKENS_ESTIMATE: u64 = 85;
/// Approximate framing of each tool call and tool definition.
pub const TOOL_OVERHEAD: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TokenizerConfig {
        TokenizerConfig {
            fallback: Some(Encoding::Cl100kBase),
            models: vec![
                (WildMatch::new("llama-*"), Some(Encoding::O200kBase)),
                (WildMatch::new("secret-*"), None),
            ],
            max_exact_bytes: DEFAULT_MAX_EXACT_BYTES,
        }
    }

    #[test]
    fn model_to_encoding() {
        let c = cfg();
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.5",
            "gpt-4.5-preview",
            "gpt-5",
            "gpt-5-mini",
            "o1",
            "o1-mini",
            "o3",
            "o3-mini",
            "o4-mini",
            "chatgpt-4o-latest",
        ] {
            assert_eq!(
                encoding_for_model(m, &c),
                Some((Encoding::O200kBase, false)),
                "{m}"
            );
        }
        for m in [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "text-embedding-ada-002",
        ] {
            assert_eq!(
                encoding_for_model(m, &c),
                Some((Encoding::Cl100kBase, false)),
                "{m}"
            );
        }
        assert_eq!(
            encoding_for_model("llama-3-70b", &c),
            Some((Encoding::O200kBase, false))
        );
        assert_eq!(encoding_for_model("secret-model", &c), None);
        assert_eq!(
            encoding_for_model("mistral-large", &c),
            Some((Encoding::Cl100kBase, true))
        );
    }

    #[test]
    fn standard_roles_are_one_token() {
        for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for role in [
                "system",
                "user",
                "assistant",
                "tool",
                "developer",
                "function",
            ] {
                assert_eq!(enc.count_uncached(role), 1, "{role} in {}", enc.name());
                assert_eq!(role_tokens(enc, role), 1);
            }
            assert_eq!(
                role_tokens(enc, "narrator-2"),
                enc.count_uncached("narrator-2")
            );
        }
    }

    #[test]
    fn cache_gives_the_same_counts_and_stays_bounded() {
        let mut cache = CountCache::default();
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let exact = Encoding::O200kBase.count_uncached(&text);
        assert_eq!(cache.count(Encoding::O200kBase, &text), exact);
        assert_eq!(cache.count(Encoding::O200kBase, &text), exact);
        assert_eq!((cache.hits, cache.misses), (1, 1));
        // Same text, other encoding: its own entry.
        assert_eq!(
            cache.count(Encoding::Cl100kBase, &text),
            Encoding::Cl100kBase.count_uncached(&text)
        );
        assert_eq!(cache.misses, 2);
        for i in 0..(3 * CACHE_ENTRIES) {
            cache.count(Encoding::O200kBase, &format!("{i} {}", &text[..300]));
        }
        assert!(cache.len() <= 2 * CACHE_ENTRIES);
        // Through the public entry point, long and short texts alike.
        assert_eq!(Encoding::O200kBase.count(&text), exact);
        assert_eq!(Encoding::O200kBase.count("Hello, world!"), 4);
    }

    #[test]
    fn known_counts() {
        // Reference values: OpenAI's tiktoken gives [13225, 11, 2375, 0] (o200k_base) and
        // [9906, 11, 1917, 0] (cl100k_base) for "Hello, world!", and the cookbook's
        // [83, 1609, 5963, 374, 2294, 0] for "tiktoken is great!" in cl100k_base.
        let bpe = tiktoken_rs::o200k_base_singleton();
        assert_eq!(
            bpe.encode_ordinary("Hello, world!"),
            vec![13225, 11, 2375, 0]
        );
        let bpe = tiktoken_rs::cl100k_base_singleton();
        assert_eq!(
            bpe.encode_ordinary("Hello, world!"),
            vec![9906, 11, 1917, 0]
        );
        assert_eq!(
            bpe.encode_ordinary("tiktoken is great!"),
            vec![83, 1609, 5963, 374, 2294, 0]
        );
        assert_eq!(Encoding::O200kBase.count("Hello, world!"), 4);
        assert_eq!(Encoding::Cl100kBase.count("tiktoken is great!"), 6);
        assert_eq!(Encoding::O200kBase.count(""), 0);
        // A special-token string in user text counts as ordinary text.
        assert!(Encoding::O200kBase.count("<|endoftext|>") > 1);
    }
}
