// SPDX-License-Identifier: GPL-2.0

//! Replays the fuzzer's saved inputs as ordinary tests: every file of
//! `userspace/fuzz/corpus/<target>/` and `userspace/fuzz/crashes/<target>/` goes through the
//! target function the fuzzer runs (`hark_fuzz_targets::TARGETS`), with the same overflow
//! checks and assertions. Crash inputs whose bug is not fixed yet wait in
//! `crashes/<target>/known/`, which is not replayed (see `Documentation/testing.md`).

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files directly in `dir` (not in subdirectories such as `known/`), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs every file of `kind/<target>/`; returns how many ran and the failures.
fn replay(kind: &str) -> (usize, Vec<String>) {
    let root = fuzz_dir().join(kind);
    let mut ran = 0;
    let mut failed = Vec::new();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(run) = hark_fuzz_targets::target(&name) else {
            failed.push(format!("{}: no target called {name}", dir.display()));
            continue;
        };
        for f in files(&dir) {
            let data = fs::read(&f).unwrap();
            ran += 1;
            if panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(format!(
                    "{kind}/{name}/{}",
                    f.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    (ran, failed)
}

#[test]
fn fuzz_corpus_and_crashes_replay() {
    // Every target has a corpus, so a lost directory is noticed.
    for (name, _) in hark_fuzz_targets::TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        assert!(!files(&dir).is_empty(), "{}: no corpus", dir.display());
    }
    let (corpus, mut failed) = replay("corpus");
    let (crashes, f) = replay("crashes");
    failed.extend(f);
    println!("replayed {corpus} corpus and {crashes} crash inputs");
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
}
