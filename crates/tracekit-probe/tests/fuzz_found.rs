//! ELF files the elf-symbols, usdt-notes and dwarf fuzz targets (`cargo xtask fuzz`) found,
//! kept as they were found.
//!
//! - elf/code-section-end-past-2-64: a code section whose address plus size passes 2^64;
//!   sizing the untyped symbols added them (symbols.rs:1056) and panicked under overflow
//!   checks (the fuzz profile), wrapping to a wrong end in release builds.

use std::collections::HashSet;
use std::path::Path;
use tracekit_probe::symbols::{self, Lookup};
use tracekit_probe::{dwarf, usdt};

#[test]
fn damaged_elf_files_found_by_fuzzing_are_read_without_panic() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/elf/code-section-end-past-2-64");
    let what = path.display().to_string();
    let listed = symbols::list(&what, &Lookup::default());
    let addresses: HashSet<u64> = match &listed {
        Ok((_, _, functions)) => functions.iter().map(|f| f.vaddr).collect(),
        Err(_) => HashSet::new(),
    };
    let _ = usdt::list_report(&what, &Lookup::default());
    let _ = dwarf::parameters(&path, &addresses);
}
