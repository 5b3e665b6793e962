//! Replays the fuzzing corpus (`fuzz/corpus/<target>/`) and the inputs of crashes found and
//! fixed (`fuzz/regressions/<target>/`) through `lsbackup::fuzzing`, the functions the fuzz
//! targets call (docs/fuzzing.md), so that every build re-checks them on stable Rust without
//! cargo fuzz. An input that panics fails here; errors returned are expected.

use std::path::{Path, PathBuf};

/// A fuzz target's name (its directory) and the function it calls.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 5] = [
    ("ini_inventory", lsbackup::fuzzing::ini_inventory),
    ("yaml_inventory", lsbackup::fuzzing::yaml_inventory),
    ("component_spec", lsbackup::fuzzing::component_spec),
    ("manifest", lsbackup::fuzzing::manifest),
    ("archive", lsbackup::fuzzing::archive),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Every input of `kind` (`corpus` or `regressions`) for each target through its function;
/// returns how many were run.
fn replay(kind: &str) -> usize {
    let mut n = 0;
    for (target, run) in TARGETS {
        for f in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&f).expect("reading a corpus file");
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} panics", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn corpus_replays_without_panics() {
    for (target, _) in TARGETS {
        assert!(
            !files(&fuzz_dir().join("corpus").join(target)).is_empty(),
            "fuzz/corpus/{target} is empty"
        );
    }
    let n = replay("corpus");
    println!("{n} corpus inputs replayed");
}

#[test]
fn regressions_replay_without_panics() {
    let n = replay("regressions");
    assert!(n > 0, "fuzz/regressions holds no input");
    println!("{n} regression inputs replayed");
}
