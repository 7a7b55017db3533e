//! Every input under `fuzz/regressions/<target>/` (past crashes of the fuzzers, and the seeds)
//! run through its fuzz target on stable, so a fixed crash stays fixed. See `fuzz/` and
//! `make fuzz`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use llm_gateway::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_regression_input_runs_through_its_target() {
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = fuzz_dir().join("regressions").join(name);
        let inputs = names_in(&dir);
        assert!(!inputs.is_empty(), "{} holds no input", dir.display());
        for input in inputs {
            let path = dir.join(&input);
            let data = std::fs::read(&path).unwrap();
            // A panic names the file: the input that broke again.
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{} panics again", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len());
}

#[test]
fn the_fuzz_crate_has_one_binary_per_target_and_no_other() {
    let targets: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    let files: BTreeSet<String> = names_in(&fuzz_dir().join("fuzz_targets"))
        .into_iter()
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
        .collect();
    assert_eq!(
        files, targets,
        "fuzz/fuzz_targets/*.rs and fuzzing::TARGETS differ"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    // Its own workspace, so the main workspace's build and clippy never build it.
    assert!(manifest.contains("[workspace]\nmembers = [\".\"]"));
    for t in &targets {
        assert!(
            manifest.contains(&format!("name = \"{t}\"")),
            "fuzz/Cargo.toml has no [[bin]] {t}"
        );
        let body =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{t}.rs"))).unwrap();
        assert!(
            body.contains(&format!("llm_gateway::fuzzing::{t}(data)")),
            "fuzz/fuzz_targets/{t}.rs does not call fuzzing::{t}"
        );
    }
    let dirs = names_in(&fuzz_dir().join("regressions"));
    assert_eq!(
        dirs, targets,
        "fuzz/regressions/ has a directory per target, and no other"
    );
}
