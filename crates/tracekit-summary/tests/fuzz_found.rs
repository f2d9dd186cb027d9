//! Saved reports the summary-json fuzz target (`cargo xtask fuzz summary-json`) found, kept as
//! they were found: under overflow checks (the fuzz profile) they panicked `trace diff`, because
//! counts summed across rows and documents passed u64::MAX (diff.rs:93, 94, 96, stats.rs:230
//! and the histogram's total); in release builds the sums wrapped to wrong numbers. Sums of
//! counts read from a file now saturate.

use std::path::Path;
use tracekit_core::report::Style;
use tracekit_summary::diff;

#[test]
fn reports_found_by_fuzzing_are_read_or_refused_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/summary-json");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(totals) = diff::read(&path) {
            let rows = diff::compare(&totals, &totals);
            assert!(!diff::table(&rows, Style::default()).is_empty());
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn counts_that_pass_u64_max_saturate() {
    let dir = std::env::temp_dir().join(format!("tracekit-fuzz-found-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.json");
    let max = u64::MAX;
    let doc = format!(
        r#"{{"syscalls":[{{"name":"read","calls":{max},"errors":{max},"total_ns":{max},"hist_log2_ns":[0,{max}]}}]}}"#
    );
    std::fs::write(&path, format!("{doc}\n{doc}\n")).unwrap();
    let totals = diff::read(&path).unwrap();
    let read = &totals["read"];
    assert_eq!(
        (read.calls, read.errors, read.total_ns),
        (max, max, Some(max))
    );
    assert!(read.p99_ns().is_some());
    std::fs::remove_dir_all(dir).unwrap();
}
