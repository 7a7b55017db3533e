//! The pre-tokenizers equal fancy-regex's `find_iter` with tiktoken's patterns: over generated
//! text weighted to what the patterns' corners are made of, and over real text.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{cl100k, o200k, CL100K_PAT_STR};

fn oracle(pattern: &str) -> fancy_regex::Regex {
    fancy_regex::Regex::new(pattern).unwrap()
}

fn regex_pieces<'a>(re: &fancy_regex::Regex, text: &'a str) -> Vec<&'a str> {
    re.find_iter(text).map(|m| m.unwrap().as_str()).collect()
}

/// Both splitters' pieces equal fancy-regex's on `text`, or the first difference.
fn compare(
    o200k_re: &fancy_regex::Regex,
    cl100k_re: &fancy_regex::Regex,
    text: &str,
) -> Result<(), String> {
    let want = regex_pieces(o200k_re, text);
    let got: Vec<&str> = o200k(text).collect();
    if got != want {
        return Err(format!(
            "o200k on {text:?}:\n  regex {want:?}\n  split {got:?}"
        ));
    }
    let want = regex_pieces(cl100k_re, text);
    let got: Vec<&str> = cl100k(text).collect();
    if got != want {
        return Err(format!(
            "cl100k on {text:?}:\n  regex {want:?}\n  split {got:?}"
        ));
    }
    Ok(())
}

/// What the generated texts are made of.
const FRAGMENTS: &[&str] = &[
    // Whitespace runs: ASCII, NBSP, NEL, the line and paragraph separators, other spaces.
    " ",
    " ",
    " ",
    "  ",
    "   ",
    "\t",
    "\r",
    "\n",
    "\n",
    "\r\n",
    "\n\n",
    " \n",
    "\u{a0}",
    "\u{85}",
    "\u{b}",
    "\u{c}",
    "\u{2028}",
    "\u{2029}",
    "\u{3000}",
    "\u{2003}",
    "\u{202f}",
    "\u{1680}",
    "\u{180e}",
    "\u{200b}",
    "\u{feff}",
    // Apostrophes and what the contractions are made of, in any case, with the long s and the
    // Kelvin sign.
    "'",
    "'",
    "'",
    "\u{2019}",
    "s",
    "S",
    "t",
    "T",
    "re",
    "RE",
    "rE",
    "ve",
    "VE",
    "m",
    "M",
    "ll",
    "LL",
    "lL",
    "d",
    "D",
    "\u{17f}",
    "\u{212a}",
    "k",
    "K",
    "e",
    "E",
    "l",
    "v",
    "r",
    // Digits, ASCII and other \p{N}.
    "0",
    "1",
    "42",
    "1234567",
    "\u{661}\u{662}\u{663}",
    "\u{2460}",
    "\u{2167}",
    "\u{bd}",
    "\u{ff19}",
    "\u{966}",
    // Letters: cased, titlecase, modifier, other, with combining marks, lone marks.
    "a",
    "Z",
    "hello",
    "World",
    "HTML",
    "camelCase",
    "iPhone",
    "\u{e9}",
    "e\u{301}",
    "\u{301}",
    "\u{300}\u{301}",
    "\u{1c5}",
    "\u{2b0}",
    "\u{5d0}",
    "\u{3a9}",
    "\u{df}",
    "\u{130}",
    "\u{fb01}",
    "\u{915}\u{94d}\u{937}",
    "\u{e01}\u{e34}",
    "\u{1f88}",
    "\u{2c65}",
    // CJK and other scripts.
    "中文",
    "日本語",
    "カタカナ",
    "한국어",
    "\u{4e00}",
    "Привет",
    "مرحبا",
    "שלום",
    // Emoji, ZWJ sequences, modifiers, flags, variation selectors.
    "👨\u{200d}👩\u{200d}👧",
    "👍🏽",
    "🇫🇷",
    "\u{200d}",
    "\u{fe0f}",
    "❤\u{fe0f}",
    "😀",
    // Punctuation and symbols.
    ".",
    ",",
    "/",
    "//",
    "!",
    "?",
    "-",
    "_",
    "(",
    ")",
    "{",
    "}",
    "\"",
    ":",
    ";",
    "\\",
    "#",
    "@",
    "…",
    "—",
    "«",
    "»",
    "$",
    "€",
    "<|endoftext|>",
    "```",
    "->",
    "==",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        12 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

fn run_generated(cases: u32) {
    let (o, c) = (
        oracle(tiktoken_rs::O200K_BASE_PAT_STR),
        oracle(CL100K_PAT_STR),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&text(), |t| {
        compare(&o, &c, &t).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn generated_text_splits_as_the_regex_does() {
    run_generated(4096);
}

/// The long run: `cargo test --release --lib tokens::split -- --ignored` (200,000 cases, or
/// SPLIT_CASES).
#[test]
#[ignore]
fn many_generated_texts_split_as_the_regex_does() {
    let cases = std::env::var("SPLIT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    run_generated(cases);
}

/// Real text: this repository's README, sources, JSON, YAML and the bench prompt, and prose in
/// several scripts (tests/corpus/, see its README).
pub(crate) const CORPORA: &[(&str, &str)] = &[
    ("README.md", include_str!("../../../README.md")),
    (
        "bench/prompt.txt",
        include_str!("../../../bench/prompt.txt"),
    ),
    ("src/tokens.rs", include_str!("../../tokens.rs")),
    ("src/tokens/split.rs", include_str!("../split.rs")),
    (
        "build/unicode.rs",
        include_str!("../../../build/unicode.rs"),
    ),
    (
        "envoy/gateway.yaml",
        include_str!("../../../envoy/gateway.yaml"),
    ),
    (
        "k8s/grafana/llm-gateway.json",
        include_str!("../../../k8s/grafana/llm-gateway.json"),
    ),
    (
        "tests/golden/openai_to_gemini/tool_round_trip_signature.expected.json",
        include_str!(
            "../../../tests/golden/openai_to_gemini/tool_round_trip_signature.expected.json"
        ),
    ),
    (
        "tests/corpus/arabic.txt",
        include_str!("../../../tests/corpus/arabic.txt"),
    ),
    (
        "tests/corpus/bulgarian.txt",
        include_str!("../../../tests/corpus/bulgarian.txt"),
    ),
    (
        "tests/corpus/chinese.txt",
        include_str!("../../../tests/corpus/chinese.txt"),
    ),
    (
        "tests/corpus/french.txt",
        include_str!("../../../tests/corpus/french.txt"),
    ),
    (
        "tests/corpus/greek.txt",
        include_str!("../../../tests/corpus/greek.txt"),
    ),
    (
        "tests/corpus/hebrew.txt",
        include_str!("../../../tests/corpus/hebrew.txt"),
    ),
    (
        "tests/corpus/korean.txt",
        include_str!("../../../tests/corpus/korean.txt"),
    ),
    (
        "tests/corpus/polish.txt",
        include_str!("../../../tests/corpus/polish.txt"),
    ),
    (
        "tests/corpus/russian.txt",
        include_str!("../../../tests/corpus/russian.txt"),
    ),
    (
        "tests/corpus/turkish.txt",
        include_str!("../../../tests/corpus/turkish.txt"),
    ),
    (
        "tests/corpus/mixed.txt",
        include_str!("../../../tests/corpus/mixed.txt"),
    ),
];

#[test]
fn real_text_splits_as_the_regex_does() {
    let (o, c) = (
        oracle(tiktoken_rs::O200K_BASE_PAT_STR),
        oracle(CL100K_PAT_STR),
    );
    for (name, text) in CORPORA {
        if let Err(e) = compare(&o, &c, text) {
            panic!("{name}: {e}");
        }
        // Every line alone too: more texts that start and end in new places.
        for line in text.split_inclusive('\n') {
            if let Err(e) = compare(&o, &c, line) {
                panic!("{name}: {e}");
            }
        }
    }
}

/// The traps that broke earlier emulations, and the corners of each alternative.
#[test]
fn known_corners_split_as_the_regex_does() {
    let (o, c) = (
        oracle(tiktoken_rs::O200K_BASE_PAT_STR),
        oracle(CL100K_PAT_STR),
    );
    let cases = [
        "",
        " ",
        "  ",
        "  \nx",
        " \n x",
        "x  ",
        "x \n",
        "\n\n\n",
        "\r\n\r\n  a",
        " \u{a0}x",
        "\u{a0}\u{a0}x",
        "a\u{2028}b",
        "it's",
        "IT'S",
        "it\u{2019}s",
        "it'\u{17f}",
        "'\u{17f}",
        "'\u{212a}",
        "they'LL",
        "we'Re",
        "'ll",
        "''s",
        "'",
        "x'",
        "\u{301}",
        "\u{301}a",
        " \u{301}",
        "\u{301}\u{301}A",
        "A\u{301}",
        "HELLOworld",
        "HELLO world",
        "\u{1c5}a",
        "\u{2b0}\u{2b0}",
        "12345",
        "\u{661}\u{662}\u{663}\u{664}",
        "a/b//\n\nc",
        " ///\r\n",
        "...\n\n",
        "x\t\ty",
        "\t\n",
        "end  ",
        "  \u{3000}",
        "👨\u{200d}👩\u{200d}👧 family",
        " 😀😀",
        "hello\u{200d}",
        "中文 字",
    ];
    for t in cases {
        if let Err(e) = compare(&o, &c, t) {
            panic!("{e}");
        }
    }
}

/// The cl100k pattern above is the one tiktoken-rs encodes with: counting piece by piece with
/// tiktoken-rs equals counting the whole text, on every corpus (a different split would merge
/// across a piece boundary somewhere and change a count).
#[test]
fn cl100k_pattern_is_tiktoken_rs_own() {
    for (enc, bpe) in [
        ("o200k", tiktoken_rs::o200k_base_singleton()),
        ("cl100k", tiktoken_rs::cl100k_base_singleton()),
    ] {
        for (name, text) in CORPORA {
            let whole = bpe.encode_ordinary(text).len();
            let pieces: usize = if enc == "o200k" {
                o200k(text).map(|p| bpe.encode_ordinary(p).len()).sum()
            } else {
                cl100k(text).map(|p| bpe.encode_ordinary(p).len()).sum()
            };
            assert_eq!(pieces, whole, "{enc} {name}");
        }
    }
}

/// A throughput figure, not a check (timing is the benchmarks' business):
/// `cargo test --release --lib tokens::split::tests::throughput -- --ignored --nocapture`
/// prints MB/s of each splitter and of fancy-regex on the bench prompt and the corpora.
#[test]
#[ignore]
fn throughput() {
    use std::time::Instant;
    let (o, c) = (
        oracle(tiktoken_rs::O200K_BASE_PAT_STR),
        oracle(CL100K_PAT_STR),
    );
    let mb_per_s = |text: &str, f: &dyn Fn(&str) -> usize| {
        let reps = (4 << 20) / text.len().max(1) + 1;
        let start = Instant::now();
        let mut n = 0;
        for _ in 0..reps {
            n += f(std::hint::black_box(text));
        }
        std::hint::black_box(n);
        (text.len() * reps) as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>9}",
        "MB/s", "o200k", "regex", "cl100k", "regex"
    );
    for (name, text) in CORPORA {
        println!(
            "{name:<40} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            mb_per_s(text, &|t| o200k(t).count()),
            mb_per_s(text, &|t| o.find_iter(t).count()),
            mb_per_s(text, &|t| cl100k(t).count()),
            mb_per_s(text, &|t| c.find_iter(t).count()),
        );
    }
}
