//! Deterministic, meaningful fake embeddings: an L2-normalised bag of words
//! with signed feature hashing, so texts sharing content words are close.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Default number of dimensions when the request gives none.
pub const DEFAULT_DIMENSIONS: usize = 256;

/// Words that carry little meaning; dropped unless a text has nothing else.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "did", "do", "does", "for",
    "from", "has", "have", "how", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or",
    "our", "should", "so", "that", "the", "this", "to", "was", "we", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds one hashed feature (bucket and sign from SHA-256 of the feature).
fn add_feature(v: &mut [f32], feature: &[u8]) {
    let h = Sha256::digest(feature);
    let x = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let bucket = (x % v.len() as u64) as usize;
    v[bucket] += if h[8] & 1 == 0 { 1.0 } else { -1.0 };
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Embedding of a text with `dims` (> 0) dimensions, unit length.
pub fn embed_text(text: &str, dims: usize) -> Vec<f32> {
    let all = words(text);
    let content: Vec<&String> = all
        .iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect();
    let features: Vec<&String> = if content.is_empty() {
        all.iter().collect()
    } else {
        content
    };
    let mut v = vec![0.0; dims];
    for w in &features {
        add_feature(&mut v, w.as_bytes());
    }
    if v.iter().all(|x| *x == 0.0) {
        // No words at all (or they cancelled out): still a stable unit vector.
        add_feature(&mut v, format!("\u{0}text:{text}").as_bytes());
    }
    normalise(v)
}

/// Embedding of a token array that does not decode to text: one feature per
/// token id.
pub fn embed_token_ids(tokens: &[u32], dims: usize) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    for t in tokens {
        add_feature(&mut v, format!("\u{0}token:{t}").as_bytes());
    }
    if v.iter().all(|x| *x == 0.0) {
        add_feature(&mut v, b"\0tokens");
    }
    normalise(v)
}

/// OpenAI's `encoding_format: "base64"`: little-endian f32 bytes, standard
/// base64.
pub fn to_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn paraphrases_are_close_and_unrelated_texts_far() {
        let d = DEFAULT_DIMENSIONS;
        let a = embed_text("How do I reset my password?", d);
        let b = embed_text("how can I reset my password", d);
        let c = embed_text("What is the capital of France?", d);
        let e = embed_text("Steps to reset a forgotten password", d);
        assert!(cosine(&a, &b) > 0.8, "{}", cosine(&a, &b));
        assert!(cosine(&a, &e) > 0.5, "{}", cosine(&a, &e));
        assert!(cosine(&a, &c) < 0.3, "{}", cosine(&a, &c));
        assert!(cosine(&b, &c) < 0.3, "{}", cosine(&b, &c));
    }

    #[test]
    fn vectors_are_unit_deterministic_and_sized() {
        for (text, dims) in [("hello world", 256), ("", 8), ("the", 1536), ("!!", 3)] {
            let v = embed_text(text, dims);
            assert_eq!(v.len(), dims);
            assert_eq!(v, embed_text(text, dims));
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text:?}: {norm}");
        }
        let t = embed_token_ids(&[1, 2, 3], 16);
        assert_eq!(t.len(), 16);
        assert_eq!(t, embed_token_ids(&[1, 2, 3], 16));
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let s = to_base64(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes, [0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0]);
    }
}
