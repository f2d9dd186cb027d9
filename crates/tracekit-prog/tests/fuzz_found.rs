//! Inputs the fuzz targets (`cargo xtask fuzz`) found panicking, kept as they were found: each
//! file of tests/fuzz/TARGET/ goes through what that target does and must come back as an
//! error, not a panic.
//!
//! - bpf-object/btf-header-len-0.bpf.o: a `.BTF` header length of 0 (the header is 24 bytes);
//!   tracekit's BTF editor rewrote the section sizes at offsets 8..24 of the empty header
//!   it had copied (btf.rs:336, index out of range).
//! - bpf-object/kconfig-size-4gib.bpf.o: a `__kconfig` extern whose BTF type says 4 GiB;
//!   tracekit allocated and zeroed that much for its value (20 s and more), then panicked as
//!   the section size overflowed u32 (kconfig.rs:72). An array type containing itself also
//!   recursed without end when sized.
//! - bpf-load/aya-obj-btf-rs-423.bpf.o: a BTF string offset past the string section; aya-obj
//!   0.3's BTF fix-up for the kernel (`fixup_and_sanitize_btf`, btf.rs:423) indexed with it
//!   and panicked. The fix-up now runs guarded like aya-obj's other steps (upstream bug: it
//!   should check the offset and return an error).

use std::path::{Path, PathBuf};
use tracekit_prog::{BpfObject, Error};

fn found(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

#[test]
fn damaged_objects_found_by_fuzzing_are_parse_errors_naming_the_file() {
    for path in found("bpf-object") {
        let name = path.display().to_string();
        let start = std::time::Instant::now();
        // Listing may find the damage already; else the parse for loading does.
        let err = BpfObject::from_file(&path)
            .and_then(|object| object.check_parse())
            .unwrap_err();
        let Error::Parse { what, reason } = &err else {
            panic!("{name}: {err}");
        };
        assert_eq!(what, &name);
        assert!(!reason.is_empty());
        assert!(
            start.elapsed().as_secs() < 2,
            "{name} took {:?}",
            start.elapsed()
        );
        eprintln!("{name}: {err}");
    }
}

#[test]
fn an_aya_obj_panic_in_the_btf_fixup_is_a_parse_error_naming_the_step() {
    for path in found("bpf-load") {
        let name = path.display().to_string();
        let object = BpfObject::from_file(&path).unwrap();
        for err in [
            object.check_parse().unwrap_err(),
            object.load(&object.programs()[0].name).unwrap_err(),
        ] {
            let Error::Parse { what, reason } = &err else {
                panic!("{name}: {err}");
            };
            assert_eq!(what, &name);
            assert!(
                reason.starts_with("the object is damaged: aya-obj failed while fixing up its BTF"),
                "{reason}"
            );
        }
    }
}
