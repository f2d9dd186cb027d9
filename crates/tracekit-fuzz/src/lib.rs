//! Fuzz targets for every parser of outside data in tracekit, and a runner for them on stable
//! Rust (cargo-fuzz needs nightly): `cargo xtask fuzz [TARGET] [--time SECS] [--seed N]`.
//!
//! A target is a function of bytes that hands them to one parser and must return, with `Ok`
//! or `Err`, without panicking and within its time limit. The runner ([`run::run`]) tries the
//! target's seeds (valid inputs: the repository's BPF objects, captures, test vectors, the
//! files of `corpus/`), then mutated seeds ([`mutate`]: bit flips, interesting integers,
//! insertions, deletions, splices, truncations, tokens of the format), each reproducible from
//! the run's seed and its index. An input that panics is saved under `fuzz/crashes/TARGET/`.
#![deny(missing_docs)]

mod abort;
pub mod mutate;
pub mod run;
pub mod targets;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One fuzz target.
pub struct Target {
    /// Its name on the command line, e.g. `bpf-object`.
    pub name: &'static str,
    /// The parser it feeds, for the listing.
    pub about: &'static str,
    /// Its valid inputs, which mutations start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens of the input format that mutations insert.
    pub dictionary: &'static [&'static [u8]],
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    /// An input that takes more CPU time is reported; one that runs ten times longer by the
    /// clock, and at least [`run::HANG_FLOOR`], is taken to hang, and ends the run.
    pub limit: Duration,
    /// Feeds one input to the parser; must not panic.
    pub run: fn(&[u8]),
}

/// The workspace's root directory (seeds are read from it).
pub fn workspace() -> PathBuf {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// Every file of `dir` (relative to the workspace) whose name ends with `suffix`, read, in
/// name order so that runs are reproducible.
pub fn files(dir: &str, suffix: &str) -> Vec<Vec<u8>> {
    let dir = workspace().join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display())))
        .collect()
}

/// Writes `input` to this process's scratch file `name` and returns its path, for parsers
/// that read files. The file lives in a folder of the temporary directory named after the
/// process, so parallel runs do not share it.
pub fn scratch(name: &str, input: &[u8]) -> PathBuf {
    let dir = scratch_dir();
    let path = dir.join(name);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, input))
        .unwrap_or_else(|e| panic!("scratch file {}: {e}", path.display()));
    path
}

/// Removes this process's scratch folder.
pub fn clean_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// In /dev/shm when there is one: writing the input costs a memory copy, not a disk write
/// (on a disk-backed /tmp, parsers of files ran at a tenth of the speed).
fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tracekit-fuzz-{}", std::process::id()))
}

/// Bytes as text the way a command line or a text file reader would get them: invalid UTF-8
/// replaced, so that text parsers see every mutation.
pub fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}
