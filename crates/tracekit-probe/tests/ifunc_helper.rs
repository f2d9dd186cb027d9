//! The helper process that resolves an IFUNC of a library tracekit has not loaded: it answers
//! with the implementation (not the resolver), runs the library's code as the file's owner
//! rather than as root, and neither a constructor that forks nor one that lingers holds up the
//! answer or outlives it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tracekit_probe::ProbeSpec;
use tracekit_probe::symbols::resolve;
use tracekit_probe::test_support::compile;

const NOBODY: u32 = 65534;

/// Where `tk_ifunc` of `lib` lands, as tracekit resolves it.
fn implementation(lib: &Path) -> u64 {
    let spec = &ProbeSpec::parse(&format!("uprobe:{}:tk_ifunc", lib.display())).unwrap()[0];
    let probe = resolve(spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(probe.ifunc.as_deref(), Some("tk_ifunc"));
    probe.vaddr
}

/// The file address of `name` in `lib`'s symbol table.
fn symbol(lib: &Path, name: &str) -> u64 {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(lib).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
        .unwrap_or_else(|| panic!("no {name} in {}", lib.display()))
}

#[test]
fn the_implementation_is_found_as_the_files_owner() {
    let dir = std::env::temp_dir().join(format!("tk-ifunc-uid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let record = dir.join("uid");
    let define = format!("-DUID_FILE=\"{}\"", record.display());
    let lib = compile(
        "ifunc_lib.c",
        "libtk_ifunc_uid.so",
        &["-shared", "-fPIC", &define],
    );
    std::os::unix::fs::chown(&lib, Some(NOBODY), Some(NOBODY)).unwrap();
    assert_eq!(std::fs::metadata(&lib).unwrap().uid(), NOBODY);

    let vaddr = implementation(&lib);
    assert_eq!(vaddr, symbol(&lib, "tk_ifunc_impl"));
    assert_ne!(vaddr, symbol(&lib, "tk_ifunc_resolver"));
    let ran_as = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        ran_as.trim(),
        NOBODY.to_string(),
        "the constructor ran as root"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_constructor_that_forks_does_not_hold_up_the_answer() {
    let lib = compile(
        "ifunc_lib.c",
        "libtk_ifunc_fork.so",
        &["-shared", "-fPIC", "-DFORK_AND_LINGER"],
    );
    let start = Instant::now();
    let vaddr = implementation(&lib);
    assert_eq!(vaddr, symbol(&lib, "tk_ifunc_impl"));
    // The 5 s timeout did not have to run out: the answer was complete before the pipe closed.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // The lingering child went with the helper's process group.
    std::thread::sleep(Duration::from_millis(200));
    let lingering = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| maps_lib(pid, &lib))
        .count();
    assert_eq!(
        lingering, 0,
        "a child of the constructor outlived the helper"
    );
}

/// Whether process `pid` has `lib` mapped.
fn maps_lib(pid: u32, lib: &Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.contains(&*lib.to_string_lossy()))
}
