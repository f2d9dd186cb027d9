//! The shipped test-vector suites pass on the real kernel (root); wrong expectations and
//! malformed files fail with reasons.

use std::path::{Path, PathBuf};
use tracekit_prog::vectors::Suite;

fn vectors(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bpf/vectors")
        .join(name)
}

#[test]
fn shipped_suites_pass() {
    for (file, cases) in [
        ("xdp_port_filter.toml", 8),
        ("tc_dscp_mark.toml", 4),
        ("testrun_types.toml", 10),
    ] {
        let report = Suite::from_file(vectors(file)).unwrap().run().unwrap();
        assert!(report.all_passed(), "{file}: {:#?}", report.failures());
        assert_eq!(report.passed, cases, "{file}");
    }
}

#[test]
fn a_case_that_expects_nothing_is_refused() {
    let dir = std::env::temp_dir().join(format!("tk-vec-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("none.toml");
    std::fs::write(
        &path,
        "object = \"x.o\"\nprogram = \"p\"\n[[case]]\nname = \"checks nothing\"\npacket = { proto = \"udp\" }\n",
    )
    .unwrap();
    let err = Suite::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("case 'checks nothing' expects nothing"),
        "{err}"
    );
}

#[test]
fn wrong_expectations_fail_with_reasons() {
    let dir = std::env::temp_dir().join(format!("tracekit-prog-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let obj = vectors("../obj/tc_dscp_mark.bpf.o");
    let text = format!(
        "object = {obj:?}\nprogram = \"tc_dscp_mark\"\n\
         [[case]]\nname = \"wrong verdict\"\npacket = {{ proto = \"udp\" }}\nexpect_retval = \"TC_ACT_SHOT\"\n\
         [[case]]\nname = \"wrong field\"\npacket = {{ proto = \"udp\" }}\nexpect_fields = {{ \"ip.tos\" = 0 }}\n\
         [[case]]\nname = \"no such program\"\nprogram = \"nope\"\npacket = {{ proto = \"udp\" }}\nexpect_retval = 0\n\
         [[case]]\nname = \"misspelt verdict\"\npacket = {{ proto = \"udp\" }}\nexpect_retval = \"TC_ACT_OKK\"\n"
    );
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let report = Suite::from_file(&path).unwrap().run().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((report.passed, report.failed), (0, 4));
    assert_eq!(
        report.cases[3].failures,
        vec![
            "retval: 'TC_ACT_OKK' is not a return value of sched_cls programs; use one of \
              TC_ACT_OK, TC_ACT_RECLASSIFY, TC_ACT_SHOT, TC_ACT_PIPE, TC_ACT_STOLEN, \
              TC_ACT_QUEUED, TC_ACT_REPEAT, TC_ACT_REDIRECT, TC_ACT_TRAP, TC_ACT_UNSPEC or a number"
        ]
    );
    assert_eq!(
        report.cases[0].failures,
        vec!["retval: expected 2 (TC_ACT_SHOT), got 0 (TC_ACT_OK)"]
    );
    assert_eq!(
        report.cases[1].failures,
        vec!["ip.tos: expected 0, got 184"]
    );
    assert!(
        report.cases[2].failures[0].contains("no program named 'nope'"),
        "{:?}",
        report.cases[2]
    );
}

#[test]
fn malformed_files_are_errors() {
    let err = Suite::from_file(vectors("no-such-file.toml")).unwrap_err();
    assert!(err.to_string().contains("no-such-file.toml"), "{err}");
}
