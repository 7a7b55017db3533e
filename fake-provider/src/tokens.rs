//! Token counting with the same tokenizers OpenAI uses (tiktoken-rs), and the
//! deterministic completion text whose pieces are one token each.

use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use tiktoken_rs::{ChatCompletionRequestMessage, CoreBPE};

/// Model whose tokenizer (o200k_base) is used when tiktoken knows none for the
/// requested model.
pub const FALLBACK_MODEL: &str = "gpt-4o";

/// The tokenizer for `model`, falling back to o200k_base for unknown models.
pub fn tokenizer_for(model: &str) -> Tokenizer {
    get_tokenizer(model).unwrap_or(Tokenizer::O200kBase)
}

/// The shared BPE instance for a tokenizer.
pub fn bpe(tokenizer: Tokenizer) -> &'static CoreBPE {
    // `bpe_for_tokenizer` only returns cached singletons; it cannot fail.
    tiktoken_rs::bpe_for_tokenizer(tokenizer).expect("tiktoken singleton")
}

/// Number of tokens of `text`, encoded as ordinary text: OpenAI's API never reads
/// special-token strings (`<|endoftext|>`) in user content as special tokens.
pub fn count(tokenizer: Tokenizer, text: &str) -> u64 {
    bpe(tokenizer).encode_ordinary(text).len() as u64
}

/// Prompt tokens of a chat request, with OpenAI's published formula: 3 tokens of framing per
/// message, the tokens of its role, content and name (+1 for a name), tool calls' names and
/// arguments (+1 each), and 3 tokens priming the reply.
///
/// Returns the count and the tokenizer it used (the model's own when tiktoken knows it as a
/// chat model, else gpt-4o's o200k_base).
pub fn chat_prompt_tokens(
    model: &str,
    messages: &[ChatCompletionRequestMessage],
) -> (u64, Tokenizer) {
    let tokenizer = match get_tokenizer(model) {
        Some(t @ (Tokenizer::Cl100kBase | Tokenizer::O200kBase | Tokenizer::O200kHarmony)) => t,
        _ => tokenizer_for(FALLBACK_MODEL),
    };
    let mut n = 3;
    for m in messages {
        n += 3 + count(tokenizer, &m.role);
        n += m.content.as_deref().map_or(0, |c| count(tokenizer, c));
        n += m
            .name
            .as_deref()
            .map_or(0, |name| count(tokenizer, name) + 1);
        for call in m.tool_calls.iter().chain(m.function_call.as_ref()) {
            n += count(tokenizer, &call.name) + count(tokenizer, &call.arguments) + 1;
        }
        n += m.refusal.as_deref().map_or(0, |r| count(tokenizer, r));
    }
    (n, tokenizer)
}

/// Words of the fake completion after the first ("The"); each is a single
/// token in both o200k_base and cl100k_base (asserted in the tests).
const WORDS: &[&str] = &[
    " the", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", " and",
    " then", " runs", " back", " to", " the", " house", " where", " it", " can", " rest", " for",
    " a", " while",
];

/// The `n` pieces of the deterministic completion; each is one token.
pub fn completion_pieces(n: usize) -> Vec<&'static str> {
    choice_pieces(0, n)
}

/// The `n` pieces of choice `choice`'s completion (with `n` > 1 choices): "The", then the
/// words shifted by `choice`, so every choice reads differently; each piece is one token.
/// Choice 0 is [`completion_pieces`].
pub fn choice_pieces(choice: u32, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|i| {
            if i == 0 {
                "The"
            } else {
                WORDS[(i + choice as usize) % WORDS.len()]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_is_one_token_in_o200k_and_cl100k() {
        for t in [Tokenizer::O200kBase, Tokenizer::Cl100kBase] {
            for w in WORDS.iter().chain(std::iter::once(&"The")) {
                assert_eq!(bpe(t).encode_ordinary(w).len(), 1, "{w:?} in {t:?}");
            }
        }
    }

    #[test]
    fn completion_text_has_exactly_n_tokens() {
        for t in [Tokenizer::O200kBase, Tokenizer::Cl100kBase] {
            for n in (0..=60).chain([100, 257]) {
                let text: String = completion_pieces(n).concat();
                assert_eq!(count(t, &text), n as u64, "n={n} {t:?}: {text:?}");
            }
        }
        assert_eq!(
            completion_pieces(5).concat(),
            "The quick brown fox jumps",
            "readable text"
        );
    }

    #[test]
    fn every_choice_has_exactly_n_tokens_and_its_own_text() {
        for t in [Tokenizer::O200kBase, Tokenizer::Cl100kBase] {
            for choice in 0..30 {
                for n in [0, 1, 2, 5, 24, 60] {
                    let text: String = choice_pieces(choice, n).concat();
                    assert_eq!(count(t, &text), n as u64, "choice {choice} n={n} {t:?}");
                }
            }
        }
        assert_eq!(choice_pieces(0, 40), completion_pieces(40));
        assert_eq!(choice_pieces(1, 3).concat(), "The brown fox");
        assert_ne!(choice_pieces(1, 16), choice_pieces(2, 16));
    }

    fn msg(role: &str, content: &str) -> ChatCompletionRequestMessage {
        ChatCompletionRequestMessage {
            role: role.into(),
            content: Some(content.into()),
            ..Default::default()
        }
    }

    #[test]
    fn chat_formula_matches_known_values() {
        // "Hello" as a user message to gpt-4o: 3 (per message) + 1 ("user")
        // + 1 ("Hello") + 3 (reply priming) = 8, the value OpenAI reports.
        assert_eq!(
            chat_prompt_tokens("gpt-4o", &[msg("user", "Hello")]),
            (8, Tokenizer::O200kBase)
        );
        // Unknown models are counted as gpt-4o.
        assert_eq!(
            chat_prompt_tokens("my-local-llama", &[msg("user", "Hello")]),
            (8, Tokenizer::O200kBase)
        );
        // cl100k model: same count here but the tokenizer is the model's own.
        assert_eq!(
            chat_prompt_tokens("gpt-4", &[msg("user", "Hello")]).1,
            Tokenizer::Cl100kBase
        );
        // Non-chat tokenizer (p50k) falls back to gpt-4o too.
        assert_eq!(
            chat_prompt_tokens("text-davinci-003", &[msg("user", "Hello")]).1,
            Tokenizer::O200kBase
        );
    }

    #[test]
    fn tokenizer_fallback() {
        assert_eq!(tokenizer_for("gpt-4o-mini"), Tokenizer::O200kBase);
        assert_eq!(
            tokenizer_for("text-embedding-3-small"),
            Tokenizer::Cl100kBase
        );
        assert_eq!(tokenizer_for("nope"), Tokenizer::O200kBase);
    }
}
