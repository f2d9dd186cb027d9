//! Inputs the fuzz targets (`cargo xtask fuzz`) found, kept as they were found.
//!
//! - cli-size/cpu-range-4294967296.txt: `0-4294967296,6` as a CPU list made `parse_cpu_list`
//!   ask for a 32 GiB vector: the allocation failed and aborted the process.

use std::path::Path;
use tracekit_core::units::parse_cpu_list;

#[test]
fn a_cpu_range_beyond_the_largest_cpu_is_an_error_at_once() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/cli-size/cpu-range-4294967296.txt");
    let input = std::fs::read_to_string(path).unwrap();
    // Before the fix the allocation aborted the test process; now it is an error at once.
    let err = parse_cpu_list(&input).unwrap_err();
    assert!(err.to_string().contains("0 to 8191"), "{err}");
    assert_eq!(parse_cpu_list("0-8191").unwrap().len(), 8192);
}
