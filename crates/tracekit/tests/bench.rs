//! `tracekit bench` end to end: the real binary on the real /dev/kvm (root in CI), small sizes.

mod common;
use common::{fails_with, tracekit};

/// Runs a bench subcommand with --json and returns the parsed report.
fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend(args);
    all.push("--json");
    let out = tracekit(&all);
    assert!(
        out.status.success(),
        "{all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Checks a demand-paging report of `vcpus` × 4 MiB: every page verified, one time per vCPU.
fn check_demand_paging(doc: &serde_json::Value, vcpus: u64) {
    let pages = vcpus * 1024;
    assert_eq!(doc["vcpus"], vcpus);
    assert_eq!(doc["total_pages"], pages);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["verification"]["pages_checked"], pages);
    assert_eq!(doc["verification"]["mismatches"], 0);
    assert_eq!(doc["vcpu_seconds"].as_array().unwrap().len() as u64, vcpus);
    assert!(doc["pages_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn demand_paging_one_vcpu_kernel_faults() {
    let doc = json(&["demand-paging", "-v", "1", "-b", "4M"]);
    check_demand_paging(&doc, 1);
    assert_eq!(doc["engine"], "kvm");
    assert!(doc["uffd"].is_null());
    // The test slot sits at the top of guest physical memory, mapped at 3 GiB.
    assert!(doc["test_gpa"].as_u64().unwrap() >= 1 << 35);
    assert_eq!(doc["test_gva"], 0xc000_0000u64);
}

#[test]
fn guest_runs_in_user_mode_unless_told_otherwise() {
    let doc = json(&["demand-paging", "-v", "1", "-b", "4M"]);
    assert!(
        doc["guest_mode"]
            .as_str()
            .unwrap()
            .ends_with("user mode (CPL 3)")
    );
    let doc = json(&["demand-paging", "-v", "2", "-b", "4M", "-u", "--supervisor"]);
    check_demand_paging(&doc, 2);
    assert!(
        doc["guest_mode"]
            .as_str()
            .unwrap()
            .ends_with("supervisor mode (CPL 0)")
    );
    let doc = json(&[
        "dirty-log",
        "-v",
        "1",
        "-b",
        "4M",
        "-i",
        "2",
        "--supervisor",
    ]);
    assert_eq!(
        (doc["bitmap_exact"].as_bool(), doc["verified"].as_bool()),
        (Some(true), Some(true))
    );
}

#[test]
fn demand_paging_two_vcpus_kernel_faults() {
    check_demand_paging(&json(&["demand-paging", "-v", "2", "-b", "4M"]), 2);
}

#[test]
fn demand_paging_one_vcpu_uffd() {
    let doc = json(&["demand-paging", "-v", "1", "-b", "4M", "-u"]);
    check_demand_paging(&doc, 1);
    assert_eq!(doc["uffd"]["handlers"], 1);
    assert_eq!(doc["uffd"]["copies"], 1024);
}

#[test]
fn demand_paging_two_vcpus_uffd_pinned() {
    let doc = json(&["demand-paging", "-v", "2", "-b", "4M", "-u", "-c", "0,0"]);
    check_demand_paging(&doc, 2);
    assert_eq!(doc["uffd"]["mode"], "per-vcpu");
    assert_eq!(
        (
            doc["uffd"]["handlers"].as_u64(),
            doc["uffd"]["copies"].as_u64()
        ),
        (Some(2), Some(2048))
    );
    assert_eq!(doc["cpus"], serde_json::json!([0, 0]));
}

#[test]
fn demand_paging_two_vcpus_shared_handler_shared_memory() {
    let doc = json(&[
        "demand-paging",
        "-v",
        "2",
        "-b",
        "4M",
        "-u",
        "-a",
        "-s",
        "shared",
    ]);
    check_demand_paging(&doc, 2);
    assert_eq!(doc["backing"], "shared");
    assert_eq!(
        (
            doc["uffd"]["handlers"].as_u64(),
            doc["uffd"]["copies"].as_u64()
        ),
        (Some(1), Some(2048))
    );
}

#[test]
fn demand_paging_host_floor_with_and_without_uffd() {
    let doc = json(&["demand-paging", "-v", "2", "-b", "4M", "--no-kvm"]);
    check_demand_paging(&doc, 2);
    assert_eq!(doc["engine"], "host");
    assert!(doc["test_gpa"].is_null());
    let doc = json(&["demand-paging", "-v", "2", "-b", "4M", "--no-kvm", "-u"]);
    check_demand_paging(&doc, 2);
    assert_eq!(doc["uffd"]["copies"], 2048);
}

#[test]
fn dirty_log_bitmap_is_exactly_the_pages_written() {
    // 2 vCPUs × 1024 pages, every third page written: pages 0, 3, ..., 1023 of each = 342 each.
    let doc = json(&["dirty-log", "-v", "2", "-b", "4M", "-i", "3", "-f", "3"]);
    assert_eq!(doc["expected_dirty_pages"], 684);
    let iterations = doc["iterations"].as_array().unwrap();
    assert_eq!(iterations.len(), 3);
    for it in iterations {
        assert_eq!(it["dirty_pages"], 684);
        assert_eq!(it["bitmap_exact"], true);
        assert_eq!(it["vcpu_seconds"].as_array().unwrap().len(), 2);
    }
    assert_eq!(doc["bitmap_exact"], true);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["verification"]["pages_checked"], 2048);
}

#[test]
fn dirty_log_without_manual_protect() {
    let doc = json(&["dirty-log", "-v", "1", "-b", "4M", "-i", "2", "-g"]);
    assert_eq!(doc["manual_protect"], false);
    assert!(doc["clear_log_seconds"].is_null());
    for it in doc["iterations"].as_array().unwrap() {
        assert_eq!(it["dirty_pages"], 1024);
        assert_eq!(it["bitmap_exact"], true);
    }
}

#[test]
fn dirty_log_host_floor_has_no_log() {
    let doc = json(&["dirty-log", "-v", "2", "-b", "4M", "-i", "2", "--no-kvm"]);
    assert_eq!(doc["engine"], "host");
    assert!(doc["bitmap_exact"].is_null());
    assert_eq!(doc["iterations"].as_array().unwrap().len(), 2);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["verification"]["pages_checked"], 2048);
}

#[test]
fn text_report_and_output_file() {
    let path = std::env::temp_dir().join(format!("tracekit-bench-{}.txt", std::process::id()));
    let out = tracekit(&[
        "bench",
        "demand-paging",
        "-v",
        "2",
        "-b",
        "4M",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        text.contains("Demand paging: 2 vCPUs x 4 MiB (1024 pages each)"),
        "{text}"
    );
    assert!(
        text.contains("verified: all 2048 of 2048 pages hold what was written"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("total"))
            .count(),
        1
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    // More than the host has (the machine has tens of GiB, not a TiB): refused, not OOM-killed.
    fails_with(
        &["bench", "demand-paging", "-v", "2", "-b", "400G"],
        "of memory but the host has",
    );
    fails_with(
        &["bench", "demand-paging", "-b", "4100"],
        "4100 bytes per vCPU is not a multiple of the guest page size (4096 bytes); round it, e.g. to 8192",
    );
    fails_with(
        &["bench", "demand-paging", "-v", "0", "-b", "4M"],
        "0 vCPUs requested, but a test needs at least one",
    );
    fails_with(
        &["bench", "dirty-log", "-v", "100000", "-b", "4M"],
        "100000 vCPUs requested, but that is more than KVM allows",
    );
    fails_with(
        &["bench", "demand-paging", "-v", "2", "-b", "64T"],
        "requested more guest memory than the address space allows",
    );
    fails_with(
        &[
            "bench",
            "demand-paging",
            "-b",
            "4M",
            "--kvm-device",
            "/nonexistent/kvm",
        ],
        "cannot open /nonexistent/kvm: No such file or directory (os error 2); load the kvm module",
    );
    fails_with(
        &["bench", "demand-paging", "-v", "2", "-b", "4M", "-c", "0"],
        "give one CPU per vCPU",
    );
    fails_with(
        &["bench", "dirty-log", "-b", "4M", "-i", "0"],
        "0 iterations requested; choose between 1 and 65535",
    );
}

#[test]
fn bad_size_is_a_usage_error() {
    let out = tracekit(&["bench", "demand-paging", "-b", "12Q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid size '12Q'"));
}

/// -u --minor on shared memory: one UFFDIO_CONTINUE per page, the page cache's contents kept
/// (verified), the handler's latency histogram holding every fault, the guest's own pass times.
#[test]
fn minor_faults_with_latency_histogram_and_guest_times() {
    let doc = json(&[
        "demand-paging",
        "-v",
        "2",
        "-b",
        "4M",
        "-s",
        "shared",
        "-u",
        "--minor",
    ]);
    check_demand_paging(&doc, 2);
    let u = &doc["uffd"];
    assert_eq!(
        (u["kind"].as_str(), u["copies"].as_u64()),
        (Some("minor"), Some(2048))
    );
    let buckets = u["fault_latency_ns"]["buckets"].as_array().unwrap();
    let total: u64 = buckets.iter().map(|b| b.as_u64().unwrap()).sum();
    assert_eq!(Some(total), u["faults"].as_u64());
    assert_eq!(doc["guest_seconds"].as_array().unwrap().len(), 2);
    fails_with(
        &["bench", "demand-paging", "-b", "4M", "-u", "--minor"],
        "minor faults need shared memory",
    );
}

/// dirty-log -w 0 and -w 100: no page and every page in every bitmap, exactly.
#[test]
fn dirty_log_write_percentage_extremes() {
    for (percent, pages) in [("0", 0), ("100", 1024)] {
        let doc = json(&["dirty-log", "-v", "1", "-b", "4M", "-i", "2", "-w", percent]);
        assert_eq!(doc["bitmap_exact"], true);
        assert_eq!(doc["verified"], true);
        for it in doc["iterations"].as_array().unwrap() {
            assert_eq!(it["dirty_pages"], pages, "-w {percent}");
        }
    }
}

/// --overlap: both vCPUs visit all 2048 pages, each faulted once through one uffd; -x beyond
/// what KVM allows (or 0) is refused with the limit.
#[test]
fn overlap_and_memslot_limits() {
    let doc = json(&[
        "demand-paging",
        "-v",
        "2",
        "-b",
        "4M",
        "--overlap",
        "-u",
        "-r",
        "2",
    ]);
    assert_eq!(doc["verified"], true);
    assert_eq!(
        (doc["total_pages"].as_u64(), doc["pages_visited"].as_u64()),
        (Some(2048), Some(4096))
    );
    let u = &doc["uffd"];
    assert_eq!(
        (
            u["uffds"].as_u64(),
            u["handlers"].as_u64(),
            u["copies"].as_u64()
        ),
        (Some(1), Some(2), Some(2048))
    );
    let doc = json(&["dirty-log", "-v", "2", "-b", "4M", "-i", "1", "-x", "8"]);
    assert_eq!(
        (doc["memslots"].as_u64(), doc["bitmap_exact"].as_bool()),
        (Some(8), Some(true))
    );
    fails_with(
        &["bench", "dirty-log", "-b", "4M", "-x", "0"],
        "0 memslots requested",
    );
    fails_with(
        &["bench", "demand-paging", "-b", "4M", "-x", "1000000"],
        "the guest's code and page tables take one",
    );
}

/// -e and -p from the command line: the vCPUs' extra passes while logging is disabled are
/// reported and verified, the test memory lands at the GPA asked (shown in the text report),
/// and a GPA inside low memory is an error naming the range to choose from.
#[test]
fn dirty_while_disabling_and_test_memory_address() {
    let doc = json(&["dirty-log", "-v", "2", "-b", "4M", "-i", "1", "-e"]);
    let passes = doc["passes_while_disabling"].as_array().unwrap();
    assert_eq!(passes.len(), 2);
    assert!(passes.iter().all(|p| p.as_u64() >= Some(1)), "{passes:?}");
    assert_eq!(doc["verified"], true);
    let doc = json(&["demand-paging", "-b", "4M", "-p", "0x100000000"]);
    assert_eq!(
        (doc["test_gpa"].as_u64(), doc["verified"].as_bool()),
        (Some(1 << 32), Some(true))
    );
    let out = tracekit(&["bench", "dirty-log", "-b", "4M", "-i", "1", "--gpa", "4G"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("test memory at GPA 0x100000000"), "{text}");
    fails_with(
        &["bench", "dirty-log", "-b", "4M", "-p", "0x1000"],
        "overlaps the guest's low memory",
    );
}
