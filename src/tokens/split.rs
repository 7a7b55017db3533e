//! tiktoken's pre-tokenizers, by hand: the pieces `fancy_regex::Regex::find_iter` yields with
//! o200k_base's and cl100k_base's patterns (`tiktoken_rs::tiktoken_ext::openai_public`), without
//! a regex engine, without allocating, and without start-up work.
//!
//! Each scanner tries the pattern's alternatives at a position strictly in order and follows
//! each one's backtracking to its first success, as the backtracking engine does (the
//! derivation is beside each alternative). Every character starts some alternative, so the
//! pieces are contiguous and cover the text. The Unicode classes (`\p{L}`, `\p{N}`, `\s`, the
//! upper- and lower-case-like classes of o200k, the case-insensitive letters of the
//! contractions) are regex-syntax's own tables, generated at build time by build/unicode.rs.
//!
//! The tests compare the pieces with fancy-regex's over generated and real text; so does the
//! `split` fuzz target (src/fuzzing).

// LATIN1, RANGES, BMP_INDEX, BMP_BLOCKS, FOLD_S, FOLD_T, FOLD_R, FOLD_E, FOLD_V, FOLD_M, FOLD_L, FOLD_D.
include!(concat!(env!("OUT_DIR"), "/split_unicode.rs"));

/// `\p{L}`.
const L: u8 = 1;
/// `\p{N}`.
const N: u8 = 2;
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
const UPPERISH: u8 = 4;
/// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
const LOWERISH: u8 = 8;
/// `\s`.
const SPACE: u8 = 16;

/// The class bits of a code point.
#[inline(always)]
fn bits_of(cp: u32) -> u8 {
    if cp < 256 {
        return LATIN1.get(cp as usize).copied().unwrap_or(0);
    }
    if cp < 0x10000 {
        let block = BMP_INDEX.get((cp >> 6) as usize).copied().unwrap_or(0);
        let at = (usize::from(block) << 6) | (cp & 63) as usize;
        return BMP_BLOCKS.get(at).copied().unwrap_or(0);
    }
    let key = (cp << 8) | 0xff;
    let n = RANGES.partition_point(|&e| e <= key);
    RANGES
        .get(n.wrapping_sub(1))
        .map_or(0, |&e| (e & 0xff) as u8)
}

/// One character of the text: its code point, its length in bytes and its class bits.
#[derive(Clone, Copy)]
struct Ch {
    cp: u32,
    len: usize,
    bits: u8,
}

impl Ch {
    fn is(self, bits: u8) -> bool {
        self.bits & bits != 0
    }

    /// `\r` or `\n`.
    fn is_newline(self) -> bool {
        self.cp == 0x0A || self.cp == 0x0D
    }

    /// `[^\r\n\p{L}\p{N}]`.
    fn is_prefix(self) -> bool {
        !self.is(L | N) && !self.is_newline()
    }

    /// `[^\s\p{L}\p{N}]`.
    fn is_other(self) -> bool {
        !self.is(SPACE | L | N)
    }
}

/// The character at byte `i` of `s` (valid UTF-8, `i` on a boundary), if any.
#[inline(always)]
fn at(s: &[u8], i: usize) -> Option<Ch> {
    let b0 = *s.get(i)?;
    if b0 < 0x80 {
        let bits = LATIN1.get(usize::from(b0)).copied().unwrap_or(0);
        return Some(Ch {
            cp: u32::from(b0),
            len: 1,
            bits,
        });
    }
    let cont = |k: usize| u32::from(s.get(i + k).copied().unwrap_or(0x80) & 0x3f);
    let (cp, len) = if b0 < 0xE0 {
        ((u32::from(b0 & 0x1f) << 6) | cont(1), 2)
    } else if b0 < 0xF0 {
        ((u32::from(b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (
            (u32::from(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        )
    };
    Some(Ch {
        cp,
        len,
        bits: bits_of(cp),
    })
}

/// The end of the run of characters with any of `bits` from `i`.
#[inline(always)]
fn run(s: &[u8], mut i: usize, bits: u8) -> usize {
    while let Some(c) = at(s, i) {
        if !c.is(bits) {
            break;
        }
        i += c.len;
    }
    i
}

/// Whether code point `cp` is one of `set`'s.
#[inline(always)]
fn one_of(set: &[char], cp: u32) -> bool {
    set.iter().any(|&c| u32::from(c) == cp)
}

/// A run of whitespace from `i` (at least one character): where it ends, where its last
/// character starts, and the end of its last `\r` or `\n`, if any.
struct Spaces {
    end: usize,
    last: usize,
    after_newline: Option<usize>,
}

#[inline(always)]
fn spaces(s: &[u8], mut i: usize) -> Spaces {
    let mut out = Spaces {
        end: i,
        last: i,
        after_newline: None,
    };
    while let Some(c) = at(s, i) {
        if !c.is(SPACE) {
            break;
        }
        out.last = i;
        i += c.len;
        if c.is_newline() {
            out.after_newline = Some(i);
        }
    }
    out.end = i;
    out
}

/// The pattern tiktoken-rs 0.12.1 builds cl100k_base with (inside `openai_public::cl100k_base`,
/// not exported), for the tests and the fuzz target; a test checks it against tiktoken-rs's
/// counts. o200k_base's is `tiktoken_rs::O200K_BASE_PAT_STR`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const CL100K_PAT_STR: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// The pieces of `text` under o200k_base's pattern.
pub(crate) fn o200k(text: &str) -> Pieces<'_, O200k> {
    Pieces {
        text,
        pos: 0,
        pattern: O200k,
    }
}

/// The pieces of `text` under cl100k_base's pattern.
pub(crate) fn cl100k(text: &str) -> Pieces<'_, Cl100k> {
    Pieces {
        text,
        pos: 0,
        pattern: Cl100k,
    }
}

/// A pre-tokenizer: where the piece starting at byte `i` of `s` ends.
pub(crate) trait Pattern {
    /// `s` is valid UTF-8, `i < s.len()` on a character boundary; the result is a boundary
    /// past `i`.
    fn end(&self, s: &[u8], i: usize) -> usize;
}

/// The pieces of a text, in order; each one a slice of it.
pub(crate) struct Pieces<'a, P> {
    text: &'a str,
    pos: usize,
    pattern: P,
}

impl<'a, P: Pattern> Iterator for Pieces<'a, P> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if start >= self.text.len() {
            return None;
        }
        let end = self.pattern.end(self.text.as_bytes(), start);
        self.pos = end;
        self.text.get(start..end)
    }
}

/// o200k_base:
/// ```text
/// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
/// |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
/// |\p{N}{1,3}
/// | ?[^\s\p{L}\p{N}]+[\r\n/]*
/// |\s*[\r\n]+
/// |\s+(?!\S)
/// |\s+
/// ```
pub(crate) struct O200k;

/// o200k's contraction, `(?i:'s|'t|'re|'ve|'m|'ll|'d)?`, at `i`: where it ends (`i` if none).
#[inline(always)]
fn o200k_contraction(s: &[u8], i: usize) -> usize {
    if s.get(i) != Some(&b'\'') {
        return i;
    }
    let Some(c1) = at(s, i + 1) else { return i };
    let j = i + 1 + c1.len;
    if one_of(&FOLD_S, c1.cp)
        || one_of(&FOLD_T, c1.cp)
        || one_of(&FOLD_M, c1.cp)
        || one_of(&FOLD_D, c1.cp)
    {
        return j;
    }
    let second = if one_of(&FOLD_R, c1.cp) || one_of(&FOLD_V, c1.cp) {
        &FOLD_E[..]
    } else if one_of(&FOLD_L, c1.cp) {
        &FOLD_L[..]
    } else {
        return i;
    };
    match at(s, j) {
        Some(c2) if one_of(second, c2.cp) => j + c2.len,
        _ => i,
    }
}

/// `[UPPERISH]*[LOWERISH]+` then the contraction, from `j`. The star takes the whole
/// upper-like run, then gives characters back until the plus can take one: the plus starts at
/// the run's end when a lower-like character follows it, else at the run's last lower-like
/// character (what follows that one is not lower-like, so the plus takes it alone).
#[inline(always)]
fn o200k_lower_word(s: &[u8], j: usize) -> Option<usize> {
    let mut i = j;
    let mut last_lower_end = None;
    loop {
        match at(s, i) {
            Some(c) if c.is(UPPERISH) => {
                i += c.len;
                if c.is(LOWERISH) {
                    last_lower_end = Some(i);
                }
            }
            Some(c) if c.is(LOWERISH) => return Some(o200k_contraction(s, run(s, i, LOWERISH))),
            _ => return last_lower_end.map(|e| o200k_contraction(s, e)),
        }
    }
}

/// `[UPPERISH]+[LOWERISH]*` then the contraction, from `j`: both greedy, nothing to give back.
#[inline(always)]
fn o200k_upper_word(s: &[u8], j: usize) -> Option<usize> {
    let k = run(s, j, UPPERISH);
    (k > j).then(|| o200k_contraction(s, run(s, k, LOWERISH)))
}

impl Pattern for O200k {
    fn end(&self, s: &[u8], i: usize) -> usize {
        let Some(c) = at(s, i) else { return s.len() };
        let next = i + c.len;
        // Alternatives 1 and 2, the optional prefix taken first, then not. Each needs an
        // upper- or lower-like character where it starts (every letter is one).
        let word = |d: Ch| d.is(UPPERISH | LOWERISH);
        let after_prefix = c.is_prefix() && at(s, next).is_some_and(word);
        if after_prefix {
            if let Some(e) = o200k_lower_word(s, next) {
                return e;
            }
        }
        if word(c) {
            if let Some(e) = o200k_lower_word(s, i) {
                return e;
            }
        }
        if after_prefix {
            if let Some(e) = o200k_upper_word(s, next) {
                return e;
            }
        }
        if word(c) {
            if let Some(e) = o200k_upper_word(s, i) {
                return e;
            }
        }
        // \p{N}{1,3}
        if c.is(N) {
            return digits(s, next);
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`: without the space, a space is no `[^\s...]`.
        if let Some(e) = punctuation(s, i, c, next, |b| matches!(b, b'\r' | b'\n' | b'/')) {
            return e;
        }
        if c.is(SPACE) {
            let run = spaces(s, i);
            // `\s*[\r\n]+`: the star gives back down to the run's last newline, which the
            // plus takes alone (what follows it in the run is no newline).
            if let Some(e) = run.after_newline {
                return e;
            }
            // `\s+(?!\S)`: the whole run at the end of the text; else the run less its last
            // character, if that leaves one.
            if run.end == s.len() {
                return run.end;
            }
            if run.last > i {
                return run.last;
            }
            // `\s+`: the run is one character.
            return run.end;
        }
        // Every character starts one of the alternatives above.
        next
    }
}

/// cl100k_base:
/// ```text
/// '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
/// |\s++$|\s*[\r\n]|\s+(?!\S)|\s
/// ```
pub(crate) struct Cl100k;

impl Pattern for Cl100k {
    fn end(&self, s: &[u8], i: usize) -> usize {
        let Some(c) = at(s, i) else { return s.len() };
        let next = i + c.len;
        // '(?i:[sdmt]|ll|ve|re)
        if c.cp == u32::from(b'\'') {
            if let Some(c1) = at(s, next) {
                let j = next + c1.len;
                if one_of(&FOLD_S, c1.cp)
                    || one_of(&FOLD_D, c1.cp)
                    || one_of(&FOLD_M, c1.cp)
                    || one_of(&FOLD_T, c1.cp)
                {
                    return j;
                }
                let second = if one_of(&FOLD_L, c1.cp) {
                    Some(&FOLD_L[..])
                } else if one_of(&FOLD_V, c1.cp) || one_of(&FOLD_R, c1.cp) {
                    Some(&FOLD_E[..])
                } else {
                    None
                };
                if let (Some(second), Some(c2)) = (second, at(s, j)) {
                    if one_of(second, c2.cp) {
                        return j + c2.len;
                    }
                }
            }
        }
        // `[^\r\n\p{L}\p{N}]?+\p{L}++`: the possessive prefix is taken when it can be, and
        // then never given back (not taking it could not help: it is no letter).
        if c.is(L) {
            return run(s, next, L);
        }
        if c.is_prefix() && at(s, next).is_some_and(|d| d.is(L)) {
            return run(s, next, L);
        }
        // \p{N}{1,3}+
        if c.is(N) {
            return digits(s, next);
        }
        // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
        if let Some(e) = punctuation(s, i, c, next, |b| matches!(b, b'\r' | b'\n')) {
            return e;
        }
        if c.is(SPACE) {
            let run = spaces(s, i);
            // `\s++$`: `$` is the end of the text (no multi-line flag).
            if run.end == s.len() {
                return run.end;
            }
            // `\s*[\r\n]`: the star gives back down to the run's last newline.
            if let Some(e) = run.after_newline {
                return e;
            }
            // `\s+(?!\S)`: the run less its last character, if that leaves one.
            if run.last > i {
                return run.last;
            }
            // `\s`
            return next;
        }
        next
    }
}

/// `\p{N}{1,3}` (possessive or not, the same here) from a digit that ends at `next`.
#[inline(always)]
fn digits(s: &[u8], next: usize) -> usize {
    let mut e = next;
    for _ in 0..2 {
        match at(s, e) {
            Some(d) if d.is(N) => e += d.len,
            _ => break,
        }
    }
    e
}

/// ` ?[^\s\p{L}\p{N}]+` then every following byte `tail` takes, from `c` at `i` (ending at
/// `next`); `None` when no such character starts there.
#[inline(always)]
fn punctuation(s: &[u8], i: usize, c: Ch, next: usize, tail: impl Fn(u8) -> bool) -> Option<usize> {
    let j = if c.cp == 0x20 { next } else { i };
    if !at(s, j).is_some_and(Ch::is_other) {
        return None;
    }
    let mut e = j;
    while let Some(d) = at(s, e) {
        if !d.is_other() {
            break;
        }
        e += d.len;
    }
    while s.get(e).is_some_and(|&b| tail(b)) {
        e += 1;
    }
    Some(e)
}

#[cfg(test)]
mod tests;
