//! `tracekit prog` end to end: the real binary, the committed BPF objects, the real kernel.

mod common;
use common::{fails_with, tracekit};
use serde_json::Value;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn obj(name: &str) -> String {
    repo()
        .join("bpf/obj")
        .join(format!("{name}.bpf.o"))
        .display()
        .to_string()
}

fn ok_json(args: &[&str]) -> Value {
    let out = tracekit(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn list_shows_programs_types_and_sections() {
    let xdp = obj("xdp_port_filter");
    let list = ok_json(&["prog", "list", &xdp, "--json"]);
    let rows: Vec<(&str, &str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["kind"].as_str().unwrap(),
                p["section"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("xdp_port_filter", "xdp", "xdp"),
            ("xdp_push_tag", "xdp", "xdp")
        ]
    );
    let text =
        String::from_utf8(tracekit(&["prog", "list", &obj("testrun_rawtp")]).stdout).unwrap();
    assert!(
        text.contains("testrun_rawtp  raw_tracepoint  raw_tp/sys_enter"),
        "{text}"
    );
}

#[test]
fn port_filter_drops_9999_and_passes_others() {
    let xdp = obj("xdp_port_filter");
    let drop = ok_json(&[
        "prog",
        "run",
        &xdp,
        "xdp_port_filter",
        "--packet",
        "proto=\"udp\", dst_port=9999",
        "--repeat",
        "100",
        "--batches",
        "3",
        "--json",
    ]);
    assert_eq!(drop["retval"], 1);
    assert_eq!(drop["verdict"], "XDP_DROP");
    assert_eq!(drop["duration_ns"]["count"], 3);
    assert_eq!(drop["batch_means_ns"].as_array().unwrap().len(), 3);
    assert!(drop["duration_ns"]["min"].as_f64().unwrap() > 0.0);
    assert_eq!(drop["data_out_len"], 42);
    assert_eq!(drop["changed_offsets"], serde_json::json!([]));
    let pass = ok_json(&[
        "prog",
        "run",
        &xdp,
        "xdp_port_filter",
        "--packet",
        "proto=\"tcp\", dst_port=80",
        "--json",
    ]);
    assert_eq!(
        (pass["retval"].as_u64(), pass["verdict"].as_str()),
        (Some(2), Some("XDP_PASS"))
    );
}

#[test]
fn tc_rewrite_shows_and_writes_the_new_field() {
    let packet = tracekit_prog::packet::PacketSpec::udp(1, 2)
        .build()
        .unwrap();
    let hex = tracekit_prog::hex::encode(&packet);
    let out_file =
        std::env::temp_dir().join(format!("tracekit-prog-test-{}.bin", std::process::id()));
    let out_path = out_file.display().to_string();
    let tc = obj("tc_dscp_mark");
    let r = ok_json(&[
        "prog",
        "run",
        &tc,
        "tc_dscp_mark",
        "--data-hex",
        &hex,
        "--data-out",
        &out_path,
        "--json",
    ]);
    assert_eq!(r["verdict"], "TC_ACT_OK");
    assert_eq!(r["changed_offsets"], serde_json::json!([15, 25]));
    let written = std::fs::read(&out_file).unwrap();
    std::fs::remove_file(&out_file).unwrap();
    assert_eq!(written[15], 0xb8, "TOS is EF");
    assert_eq!(
        tracekit_prog::packet::fields(&written)["ip.checksum_ok"],
        "true"
    );
    assert_eq!(r["data_out"], tracekit_prog::hex::encode(&written));
    // The text report marks the changed bytes.
    let text = String::from_utf8(
        tracekit(&["prog", "run", &tc, "tc_dscp_mark", "--data-hex", &hex]).stdout,
    )
    .unwrap();
    assert!(text.contains("2 bytes changed"), "{text}");
    assert!(text.contains("45 b8"), "{text}");
}

#[test]
fn short_output_buffer_reports_enospc_and_the_true_size() {
    fails_with(
        &[
            "prog",
            "run",
            &obj("xdp_port_filter"),
            "xdp_push_tag",
            "--packet",
            "proto=\"udp\"",
            "--data-out-size",
            "42",
        ],
        "data_out is 46 bytes but the buffer given was 42 bytes (ENOSPC)",
    );
    // A zero-sized buffer: the kernel copies nothing and does not fail, but it is too small.
    fails_with(
        &[
            "prog",
            "run",
            &obj("xdp_port_filter"),
            "xdp_port_filter",
            "--packet",
            "proto=\"udp\"",
            "--data-out-size",
            "0",
        ],
        "data_out is 42 bytes but the buffer given was 0 bytes (ENOSPC)",
    );
}

#[test]
fn context_only_programs_run() {
    let r = ok_json(&[
        "prog",
        "run",
        &obj("testrun_rawtp"),
        "testrun_rawtp",
        "--ctx-hex",
        "0300000000000000 0400000000000000",
        "--json",
    ]);
    assert_eq!(r["retval"], 7);
    assert_eq!(r["duration_ns"], Value::Null);
    let r = ok_json(&[
        "prog",
        "run",
        &obj("testrun_syscall"),
        "testrun_syscall",
        "--ctx-hex",
        "05000000 06000000 00000000",
        "--json",
    ]);
    assert_eq!(r["retval"], 7);
    assert_eq!(r["ctx_out"], "05000000060000000b000000");
}

#[test]
fn pcap_replay_counts_verdicts() {
    let pcap = repo().join("bpf/vectors/mixed.pcap").display().to_string();
    let xdp = obj("xdp_port_filter");
    // The capture holds one runt frame on purpose: the replay reports it and exits 1.
    let out = tracekit(&[
        "prog",
        "run",
        &xdp,
        "xdp_port_filter",
        "--pcap",
        &pcap,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["packets"], 17);
    assert_eq!(
        r["counts"],
        serde_json::json!({"XDP_DROP": 5, "XDP_PASS": 11, "error": 1})
    );
    assert_eq!(r["verdicts"].as_array().unwrap().len(), 17);
    let out = tracekit(&[
        "prog",
        "run",
        &xdp,
        "xdp_port_filter",
        "--pcap",
        &pcap,
        "--verbose",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("XDP_DROP        5"), "{text}");
    // Per-packet rows: packet, len, retval, verdict.
    let per_packet = |verdict: &str| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|t| t.len() >= 4 && t[0].parse::<usize>().is_ok() && t[3] == verdict)
            .count()
    };
    assert_eq!(
        (
            per_packet("XDP_PASS"),
            per_packet("XDP_DROP"),
            per_packet("error")
        ),
        (11, 5, 1),
        "{text}"
    );
}

#[test]
fn vector_suites_pass_and_failures_exit_nonzero() {
    let dir = repo().join("bpf/vectors");
    let files: Vec<String> = [
        "xdp_port_filter.toml",
        "tc_dscp_mark.toml",
        "testrun_types.toml",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect();
    let mut args = vec!["prog", "test", "--json"];
    args.extend(files.iter().map(String::as_str));
    let reports = ok_json(&args);
    let passed: u64 = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    assert_eq!(passed, 22);

    let bad = std::env::temp_dir().join(format!("tracekit-prog-bad-{}.toml", std::process::id()));
    let text = format!(
        "object = {:?}\nprogram = \"xdp_port_filter\"\n[[case]]\nname = \"wrong on purpose\"\npacket = {{ dst_port = 9999 }}\nexpect_retval = \"XDP_PASS\"\n",
        obj("xdp_port_filter")
    );
    std::fs::write(&bad, text).unwrap();
    let out = tracekit(&["prog", "test", &bad.display().to_string()]);
    std::fs::remove_file(&bad).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("retval: expected 2 (XDP_PASS), got 1 (XDP_DROP)"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let xdp = obj("xdp_port_filter");
    let not_elf = repo().join("Cargo.toml").display().to_string();
    fails_with(&["prog", "run", &not_elf, "x"], "is not an ELF file");
    fails_with(
        &["prog", "list", "/nonexistent.bpf.o"],
        "cannot read BPF object /nonexistent.bpf.o",
    );
    fails_with(
        &["prog", "run", &xdp, "nope", "--data-hex", "00"],
        "no program named 'nope'",
    );
    fails_with(
        &[
            "prog",
            "run",
            &obj("testrun_tracepoint"),
            "testrun_tracepoint",
        ],
        "cannot test-run tracepoint programs",
    );
    fails_with(
        &[
            "prog",
            "run",
            &xdp,
            "xdp_port_filter",
            "--data-hex",
            "0011223344",
        ],
        "shorter than an Ethernet header",
    );
    fails_with(
        &["prog", "run", &xdp, "xdp_port_filter", "--data-hex", "0g"],
        "not a hex byte",
    );
    fails_with(
        &["prog", "run", &xdp, "xdp_port_filter", "--pcap", &not_elf],
        "not a pcap file",
    );
    fails_with(
        &[
            "prog",
            "run",
            &xdp,
            "xdp_port_filter",
            "--packet",
            "proto=\"sctp\"",
        ],
        "use udp, tcp or icmp",
    );
    fails_with(
        &["prog", "test", "/nonexistent.toml"],
        "bad test-vector file /nonexistent.toml",
    );
}

#[test]
fn pcap_cut_short_replays_its_complete_packets_with_a_warning() {
    let full = std::fs::read(repo().join("bpf/vectors/mixed.pcap")).unwrap();
    let dir = std::env::temp_dir().join(format!("tracekit-prog-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    // The last record loses its final 10 bytes, as when tcpdump is killed mid-write.
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let xdp = obj("xdp_port_filter");
    let out = tracekit(&[
        "prog",
        "run",
        &xdp,
        "xdp_port_filter",
        "--pcap",
        cut.to_str().unwrap(),
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ends in the middle of packet 17"), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["packets"], 16);
    assert_eq!(r["truncated"], true);
    let full = tracekit(&[
        "prog",
        "run",
        &xdp,
        "xdp_port_filter",
        "--pcap",
        repo().join("bpf/vectors/mixed.pcap").to_str().unwrap(),
        "--json",
    ]);
    let f: Value = serde_json::from_slice(&full.stdout).unwrap();
    assert_eq!(f["truncated"], false);
    assert_eq!(
        r["verdicts"].as_array().unwrap()[..],
        f["verdicts"].as_array().unwrap()[..16]
    );
}

/// bpffs, mounted if it is not (bpftool pins there).
fn bpffs() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    if !mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf"))
    {
        let ok = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()
            .unwrap();
        assert!(ok.success(), "cannot mount bpffs on /sys/fs/bpf");
    }
}

/// The first entry's value of map `name` in a `--dump-maps` report, as a little-endian u64.
fn first_value(report: &Value, name: &str) -> u64 {
    let map = report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no map {name} in {report}"));
    let hex = map["entries"][0]["value"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    u64::from_le_bytes(bytes.try_into().unwrap())
}

#[test]
fn maps_are_filled_before_and_dumped_after_the_run() {
    let counts = std::env::temp_dir().join(format!("tracekit-counts-{}.json", std::process::id()));
    std::fs::write(&counts, r#"[{"key": 0, "value": 100}]"#).unwrap();
    let fill = format!("counts={}", counts.display());
    let r = ok_json(&[
        "prog",
        "run",
        &obj("xdp_count"),
        "xdp_count",
        "--packet",
        "proto=\"udp\"",
        "--repeat",
        "5",
        "--map",
        &fill,
        "--dump-maps",
        "--json",
    ]);
    // 100 written, one cold run, then one call of five.
    assert_eq!(first_value(&r, "counts"), 106);
    std::fs::write(&counts, r#"[{"key": 1, "value": 7}]"#).unwrap();
    fails_with(
        &[
            "prog",
            "run",
            &obj("xdp_count"),
            "xdp_count",
            "--packet",
            "proto=\"udp\"",
            "--map",
            &fill,
        ],
        "cannot write key 01000000",
    );
    std::fs::write(&counts, r#"[{"key": "00", "value": 7}]"#).unwrap();
    fails_with(
        &[
            "prog",
            "run",
            &obj("xdp_count"),
            "xdp_count",
            "--packet",
            "proto=\"udp\"",
            "--map",
            &fill,
        ],
        "1 bytes of hex, the map's size is 4",
    );
    fails_with(
        &[
            "prog",
            "run",
            &obj("xdp_count"),
            "xdp_count",
            "--map",
            "nosuch=/dev/null",
        ],
        "map 'nosuch': the program has no such map; its maps are: counts",
    );
    std::fs::remove_file(&counts).unwrap();
}

#[test]
fn context_out_is_written_to_a_file() {
    let out = std::env::temp_dir().join(format!("tracekit-ctx-{}.bin", std::process::id()));
    let path = out.display().to_string();
    ok_json(&[
        "prog",
        "run",
        &obj("libbpf_sections"),
        "syscall_add_count",
        "--ctx-hex",
        "28000000 02000000 00000000",
        "--ctx-out",
        &path,
        "--json",
    ]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        [40, 0, 0, 0, 2, 0, 0, 0, 42, 0, 0, 0]
    );
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn programs_already_in_the_kernel_run_by_pin_id_and_name() {
    bpffs();
    // A pin left by a killed earlier run would make name:xdp_count ambiguous.
    for old in std::fs::read_dir("/sys/fs/bpf").unwrap().flatten() {
        if old
            .file_name()
            .to_string_lossy()
            .starts_with("tracekit-test-")
        {
            let _ = std::fs::remove_file(old.path());
        }
    }
    let pin = format!("/sys/fs/bpf/tracekit-test-{}", std::process::id());
    let loaded = std::process::Command::new("bpftool")
        .args(["prog", "load", &obj("xdp_count"), &pin])
        .status()
        .expect("bpftool (cargo xtask test installs it)");
    assert!(loaded.success());
    let run = |which: &str| {
        ok_json(&[
            "prog",
            "run",
            which,
            "--packet",
            "proto=\"udp\"",
            "--dump-maps",
            "--json",
        ])
    };
    let by_pin = run(&format!("pinned:{pin}"));
    assert_eq!(
        (by_pin["type"].as_str(), by_pin["verdict"].as_str()),
        (Some("xdp"), Some("XDP_PASS"))
    );
    // Each run is a cold call and one more: the map is the loaded program's own.
    assert_eq!(first_value(&by_pin, "counts"), 2);
    let show = std::process::Command::new("bpftool")
        .args(["prog", "show", "pinned", &pin, "--json"])
        .output()
        .unwrap();
    let id = serde_json::from_slice::<Value>(&show.stdout).unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(first_value(&run(&format!("id:{id}")), "counts"), 4);
    assert_eq!(first_value(&run("name:xdp_count"), "counts"), 6);
    std::fs::remove_file(&pin).unwrap();
    fails_with(
        &["prog", "run", "id:4294967295"],
        "cannot open the loaded program id:4294967295: no such program is loaded",
    );
    fails_with(&["prog", "run", "id:x"], "'x' is not a program id");
    fails_with(
        &["prog", "run", &format!("pinned:{pin}")],
        &format!("cannot open the loaded program pinned:{pin}"),
    );
    fails_with(
        &["prog", "run", "id:1", "xdp_count"],
        "names a program already",
    );
    fails_with(
        &["prog", "run", &obj("xdp_count")],
        "give the program's name after the object",
    );
}

/// A veth pair whose far end lives in a network namespace of its own, with a program there
/// that counts the UDP packets to port 9 it receives. Removed on drop.
struct VethPair {
    ns: String,
    near: String,
    counter_id: u32,
}

impl VethPair {
    fn new() -> VethPair {
        let pid = std::process::id();
        let mut pair = VethPair {
            ns: format!("tracekit-live-{pid}"),
            near: format!("tk{pid}a"),
            counter_id: 0,
        };
        let far = format!("tk{pid}b");
        let sh = |script: &str| {
            let out = std::process::Command::new("sh")
                .args(["-ec", script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let (ns, near) = (&pair.ns, &pair.near);
        sh(&format!(
            "ip netns add {ns}
             ip link add {near} type veth peer name {far} netns {ns}
             sysctl -qw net.ipv6.conf.{near}.disable_ipv6=1
             ip netns exec {ns} sysctl -qw net.ipv6.conf.{far}.disable_ipv6=1
             ip link set {near} up
             ip -n {ns} link set {far} up
             ip -n {ns} link set dev {far} xdpdrv obj {} sec xdp",
            obj("xdp_count_udp9")
        ));
        let link: Value =
            serde_json::from_str(&sh(&format!("ip -n {ns} -j link show dev {far}"))).unwrap();
        let counter_id = link[0]["xdp"]["prog"]["id"].as_u64().unwrap() as u32;
        pair.counter_id = counter_id;
        pair
    }

    /// UDP packets to port 9 that have arrived at the far end.
    fn arrived(&self) -> u64 {
        let prog = tracekit_prog::KernelProgram::Id(self.counter_id)
            .open()
            .unwrap();
        let map = aya::maps::Array::<_, u64>::try_from(prog.map("udp9").unwrap()).unwrap();
        map.get(&0, 0).unwrap()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

#[test]
fn live_frames_really_leave_through_the_interface() {
    let veth = VethPair::new();
    let tx = obj("xdp_live_tx");
    let udp9 = "proto=\"udp\", dst_port=9";
    let r = ok_json(&[
        "prog",
        "run",
        &tx,
        "xdp_live_tx",
        "--packet",
        udp9,
        "--dev",
        &veth.near,
        "--live",
        "--repeat",
        "1000",
        "--batches",
        "2",
        "--json",
    ]);
    // The cold call sends one frame, then two calls of 1000.
    assert_eq!(r["live_frames"]["frames_sent"], 2001);
    assert_eq!(veth.arrived(), 2001);
    assert!(
        r["live_frames"]["pps_median"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    ok_json(&[
        "prog",
        "run",
        &tx,
        "xdp_live_tx",
        "--packet",
        udp9,
        "--dev",
        &veth.near,
        "--live",
        "--batch-size",
        "7",
        "--repeat",
        "100",
        "--json",
    ]);
    assert_eq!(veth.arrived(), 2001 + 101);
    // Without --live the kernel runs the program on a copy and sends nothing.
    ok_json(&[
        "prog",
        "run",
        &tx,
        "xdp_live_tx",
        "--packet",
        udp9,
        "--dev",
        &veth.near,
        "--json",
    ]);
    assert_eq!(veth.arrived(), 2102);
    fails_with(
        &[
            "prog",
            "run",
            &tx,
            "xdp_live_tx",
            "--packet",
            udp9,
            "--live",
            "--batch-size",
            "300",
        ],
        "a live-frame batch is at most 256 frames, not 300",
    );
    fails_with(
        &[
            "prog",
            "run",
            &obj("libbpf_sections"),
            "tc_drop_all",
            "--packet",
            udp9,
            "--live",
        ],
        "live frames are for XDP programs only, not sched_cls",
    );
    fails_with(
        &[
            "prog",
            "run",
            &tx,
            "xdp_live_tx",
            "--packet",
            udp9,
            "--dev",
            "tk-no-such-if",
            "--live",
        ],
        "no interface 'tk-no-such-if' here",
    );
}
