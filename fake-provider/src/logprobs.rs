//! Deterministic log probabilities for generated tokens, in OpenAI's two shapes: chat's
//! `logprobs.content` entries (`token`, `logprob`, `bytes`, `top_logprobs`) and the legacy
//! completions' parallel lists (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).
//!
//! A sampled token's log probability depends on its choice and position only (between -0.01
//! and -0.20); the alternatives in `top_logprobs` follow it, each 0.75 less likely, so every
//! list is sorted from most to least likely and the sampled token comes first.

use crate::api::{LegacyLogprobs, OrderedMap, TokenLogprob, TopLogprob};

/// Alternative tokens offered in `top_logprobs` (distinct; enough for 20 entries without the
/// sampled one).
const ALTERNATIVES: &[&str] = &[
    " a", " an", " one", " this", " that", " my", " your", " our", " its", " their", " some",
    " no", " every", " each", " any", " all", " both", " few", " many", " more", " most", " other",
];

/// Hundredths of the sampled token's log probability.
fn sampled_hundredths(choice: u32, pos: usize) -> i64 {
    let pos = (pos % 20) as i64;
    -((pos * 7 + i64::from(choice % 20) * 3) % 20 + 1)
}

fn to_logprob(hundredths: i64) -> f64 {
    hundredths as f64 / 100.0
}

/// The sampled token and `top - 1` alternatives (at least the sampled one), most likely first.
fn ranked(token: &[u8], choice: u32, pos: usize, top: usize) -> Vec<(Vec<u8>, f64)> {
    let h = sampled_hundredths(choice, pos);
    let alternatives = ALTERNATIVES
        .iter()
        .map(|a| a.as_bytes())
        .filter(|a| *a != token)
        .take(top.saturating_sub(1))
        .zip(1i64..)
        .map(|(a, j)| (a.to_vec(), to_logprob(h - 75 * j)));
    std::iter::once((token.to_vec(), to_logprob(h)))
        .chain(alternatives)
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Chat's entry for the token `bytes` at position `pos` of choice `choice`, with `top`
/// entries in `top_logprobs` (0..=20).
pub fn chat_entry(bytes: &[u8], choice: u32, pos: usize, top: u32) -> TokenLogprob {
    let top = top as usize;
    let mut ranked = ranked(bytes, choice, pos, top.max(1));
    let logprob = ranked[0].1;
    ranked.truncate(top);
    TokenLogprob {
        token: text(bytes),
        logprob,
        bytes: bytes.to_vec(),
        top_logprobs: ranked
            .into_iter()
            .map(|(b, logprob)| TopLogprob {
                token: text(&b),
                logprob,
                bytes: b,
            })
            .collect(),
    }
}

/// The legacy `logprobs` of `tokens` (their bytes), the first at position `first_pos` of
/// choice `choice` and at character `first_offset`; `top` (0..=5) alternatives per position
/// (the sampled token is always in the map, so it holds `max(top, 1)` entries).
pub fn legacy(
    tokens: &[Vec<u8>],
    choice: u32,
    first_pos: usize,
    first_offset: usize,
    top: u32,
) -> LegacyLogprobs {
    let mut out = LegacyLogprobs {
        tokens: Vec::new(),
        token_logprobs: Vec::new(),
        top_logprobs: Vec::new(),
        text_offset: Vec::new(),
    };
    let mut offset = first_offset;
    for (i, t) in tokens.iter().enumerate() {
        let ranked = ranked(t, choice, first_pos + i, (top as usize).max(1));
        let token = text(t);
        out.token_logprobs.push(ranked[0].1);
        out.text_offset.push(offset);
        offset += token.chars().count();
        out.tokens.push(token);
        out.top_logprobs.push(OrderedMap(
            ranked.into_iter().map(|(b, lp)| (text(&b), lp)).collect(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_entries_are_ranked_and_bounded() {
        for top in 0..=20 {
            for pos in 0..30 {
                let e = chat_entry(b" fox", 1, pos, top);
                assert_eq!(e.token, " fox");
                assert_eq!(e.bytes, b" fox");
                assert!(e.logprob < 0.0 && e.logprob >= -0.2, "{}", e.logprob);
                assert_eq!(e.top_logprobs.len(), top as usize);
                if let Some(first) = e.top_logprobs.first() {
                    assert_eq!((first.token.as_str(), first.logprob), (" fox", e.logprob));
                }
                for w in e.top_logprobs.windows(2) {
                    assert!(w[0].logprob > w[1].logprob);
                    assert_ne!(w[0].token, w[1].token);
                }
                for t in &e.top_logprobs {
                    assert_eq!(t.bytes, t.token.as_bytes());
                }
            }
        }
        // An alternative equal to the sampled token is skipped.
        let e = chat_entry(b" a", 0, 0, 3);
        let tokens: Vec<&str> = e.top_logprobs.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(tokens, [" a", " an", " one"]);
        // Deterministic.
        assert_eq!(chat_entry(b"x", 2, 5, 4), chat_entry(b"x", 2, 5, 4));
    }

    #[test]
    fn legacy_lists_are_parallel() {
        let tokens: Vec<Vec<u8>> = ["The", " quick", " brown"]
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let l = legacy(&tokens, 0, 0, 10, 2);
        assert_eq!(l.tokens, ["The", " quick", " brown"]);
        assert_eq!(l.text_offset, [10, 13, 19]);
        assert_eq!(l.token_logprobs.len(), 3);
        for (i, m) in l.top_logprobs.iter().enumerate() {
            assert_eq!(m.0.len(), 2);
            assert_eq!(m.0[0], (l.tokens[i].clone(), l.token_logprobs[i]));
        }
        // logprobs: 0 still names the sampled token.
        let l = legacy(&tokens, 0, 0, 0, 0);
        assert!(l.top_logprobs.iter().all(|m| m.0.len() == 1));
        // Positions continue across stream chunks.
        let whole = legacy(&tokens, 3, 0, 0, 5);
        let tail = legacy(&tokens[1..], 3, 1, 3, 5);
        assert_eq!(whole.token_logprobs[1..], tail.token_logprobs[..]);
        assert_eq!(whole.text_offset[1..], tail.text_offset[..]);
    }
}
