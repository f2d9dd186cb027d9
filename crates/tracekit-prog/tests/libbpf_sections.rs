//! Programs in sections aya 0.14 refuses (`tc`, `tcx/ingress`, `action`, `lwt_xmit`, `syscall`
//! with a map and a subprogram) load and run with exact results; a spin lock in a custom data
//! section works; an unknown section and a verifier refusal are reported per program.
//! The object is bpf/libbpf_sections.bpf.c, built by bpf/build.sh.

use tracekit_prog::packet::PacketSpec;
use tracekit_prog::{BpfObject, Error, ProgKind, Program, RunOptions};

fn object() -> BpfObject {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bpf/obj/libbpf_sections.bpf.o"
    );
    BpfObject::from_file(path).unwrap()
}

fn load(name: &str) -> Program {
    object().load(name).unwrap()
}

fn run(prog: &Program, packet: &[u8], repeat: u32) -> u32 {
    prog.run(&RunOptions {
        data_in: packet,
        repeat,
        ..Default::default()
    })
    .unwrap()
    .retval
}

fn udp(payload_len: usize) -> Vec<u8> {
    let mut spec = PacketSpec::udp(1234, 80);
    spec.payload = "x".repeat(payload_len);
    spec.build().unwrap()
}

#[test]
fn every_program_is_listed_with_its_libbpf_type_and_whether_it_runs() {
    let mut obj = object();
    obj.check_loads();
    let rows: Vec<(&str, &str, &str, bool)> = obj
        .programs()
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.kind.name(),
                p.section.as_str(),
                p.test_run,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("act_pipe", "sched_act", "action", true),
            ("lwt_drop_big", "lwt_xmit", "lwt_xmit", true),
            (
                "unknown_section",
                "unknown section 'no_such_section'",
                "no_such_section",
                false
            ),
            ("syscall_add_count", "syscall", "syscall", true),
            ("tc_drop_all", "sched_cls", "tc", true),
            ("tc_count_locked", "sched_cls", "tc", true),
            ("tc_unchecked_lookup", "sched_cls", "tc", false),
            ("tcx_pass", "sched_cls", "tcx/ingress", true),
            ("xdp_pass", "xdp", "xdp", true),
        ]
    );
    let why = |name: &str| {
        obj.programs()
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.why_not.clone())
            .unwrap_or_default()
    };
    assert!(
        why("unknown_section").contains("libbpf does not know it"),
        "{}",
        why("unknown_section")
    );
    assert_eq!(
        why("tc_unchecked_lookup"),
        "the kernel refused to load 'tc_unchecked_lookup' (EACCES): R0 invalid mem access 'map_value_or_null'"
    );
}

#[test]
fn tc_tcx_action_and_xdp_programs_of_one_object_give_their_verdicts() {
    let packet = udp(0);
    for (name, retval, verdict) in [
        ("tc_drop_all", 2, "TC_ACT_SHOT"),
        ("tcx_pass", 0, "TC_ACT_OK"),
        ("act_pipe", 3, "TC_ACT_PIPE"),
        ("xdp_pass", 2, "XDP_PASS"),
    ] {
        let prog = load(name);
        let got = run(&prog, &packet, 1);
        assert_eq!(
            (got, prog.verdict(got).as_str()),
            (retval, verdict),
            "{name}"
        );
    }
}

#[test]
fn lwt_program_sees_the_packet_from_the_network_header() {
    let prog = load("lwt_drop_big");
    assert_eq!(prog.kind(), &ProgKind::LwtXmit);
    // IPv4 20 + UDP 8 + payload: 100 bytes passes, 101 is dropped (the Ethernet header is not
    // part of skb->len for lwt programs).
    assert_eq!(prog.verdict(run(&prog, &udp(72), 1)), "BPF_OK");
    assert_eq!(prog.verdict(run(&prog, &udp(73), 1)), "BPF_DROP");
}

#[test]
fn spin_lock_in_a_custom_data_section_counts_every_run() {
    let prog = load("tc_count_locked");
    assert!(
        prog.map_names().contains(&".data.locked"),
        "{:?}",
        prog.map_names()
    );
    let packet = udp(0);
    assert_eq!(run(&prog, &packet, 1), 1);
    assert_eq!(run(&prog, &packet, 250), 251);
    assert_eq!(run(&prog, &packet, 9), 260);
}

#[test]
fn syscall_program_with_a_map_and_a_subprogram() {
    let prog = load("syscall_add_count");
    let mut ctx = [40u32.to_le_bytes(), 2u32.to_le_bytes(), [0; 4]].concat();
    for expected_runs in 1..=3u32 {
        let out = prog
            .run(&RunOptions {
                ctx_in: &ctx,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out.retval, expected_runs);
        assert_eq!(out.ctx_out[8..12], 42u32.to_le_bytes());
        ctx = out.ctx_out;
        ctx[8..12].fill(0);
    }
    let calls: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(prog.map("calls").unwrap()).unwrap();
    assert_eq!(calls.get(&0, 0).unwrap(), 3);
}

#[test]
fn unknown_section_is_refused_by_name_and_the_rest_still_loads() {
    let err = object().load("unknown_section").unwrap_err();
    assert!(matches!(err, Error::UnknownSection { .. }), "{err}");
    assert!(err.to_string().contains("'no_such_section'"), "{err}");
    load("xdp_pass");
}

#[test]
fn verifier_refusal_gives_the_reason_and_the_source_line() {
    let err = object().load("tc_unchecked_lookup").unwrap_err();
    let Error::Refused {
        errno,
        verdict,
        log,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (errno.as_str(), verdict.as_str()),
        ("EACCES", "R0 invalid mem access 'map_value_or_null'")
    );
    // Line info survives the renaming of the `tc` section for aya-obj.
    assert!(
        log.contains("; return *n; @ libbpf_sections.bpf.c:"),
        "{log}"
    );
    assert_eq!(err.verifier_log(), Some(log.as_str()));
}

#[test]
fn core_relocation_that_cannot_be_applied_names_the_type_and_field() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bpf/obj/core_missing_field.bpf.o"
    );
    let err = BpfObject::from_file(path)
        .unwrap()
        .load("core_missing_field")
        .unwrap_err();
    let Error::Refused { verdict, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        verdict,
        "invalid func unknown#195896080; CO-RE relocations aya-obj could not apply were left as \
         that call: struct task_struct___missing.no_such_field (field_byte_offset; 1 instruction, \
         the first 1)"
    );
}

fn externs() -> BpfObject {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/obj/externs.bpf.o");
    BpfObject::from_file(path).unwrap()
}

fn run_with_context(prog: &Program, ctx: &[u8]) -> tracekit_prog::RunOutcome {
    prog.run(&RunOptions {
        ctx_in: ctx,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn kfuncs_are_called_by_their_kernel_btf_ids() {
    let prog = externs().load("kfunc_task_pid").unwrap();
    let me = std::process::id() as i32;
    assert_eq!(run_with_context(&prog, &me.to_le_bytes()).retval, me as u32);
    // No task has pid i32::MAX (pid_max is at most 2^22).
    assert_eq!(
        run_with_context(&prog, &i32::MAX.to_le_bytes()).retval,
        u32::MAX
    );
}

/// The value of CONFIG_`name` in the running kernel's configuration, read with zcat.
fn kernel_config(name: &str) -> String {
    let out = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("CONFIG_{name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no CONFIG_{name} in /proc/config.gz"))
        .to_owned()
}

#[test]
fn kconfig_externs_get_the_running_kernels_values_as_constants() {
    let prog = externs().load("kconfig_values").unwrap();
    let out = run_with_context(&prog, &[0u8; 32]).ctx_out;
    let field = |i: usize| u64::from_le_bytes(out[8 * i..8 * i + 8].try_into().unwrap());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let v: Vec<u64> = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(3)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        field(0),
        (v[0] << 16) + (v[1] << 8) + v[2].min(255),
        "LINUX_KERNEL_VERSION"
    );
    assert_eq!(
        field(1),
        kernel_config("HZ").parse::<u64>().unwrap(),
        "CONFIG_HZ"
    );
    assert_eq!(kernel_config("BPF_SYSCALL"), "y");
    assert_eq!(field(2), 1, "CONFIG_BPF_SYSCALL");
    // The weak option the kernel lacks is 0, so the call of a missing helper was dead code.
    assert_eq!(field(3), 0xdeadc0de);
    assert!(
        prog.map_names().contains(&".rodata.kconfig"),
        "{:?}",
        prog.map_names()
    );
}

#[test]
fn core_relocations_aya_cannot_apply_get_libbpf_results() {
    // bpf/core_fixups.bpf.c returns one bit per check: type_matches true and false, a type the
    // kernel lacks (no match, type id 0, size 0), and element 0 of a flexible array member at
    // the kernel's offset of the member.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bpf/obj/core_fixups.bpf.o"
    );
    let prog = BpfObject::from_file(path)
        .unwrap()
        .load("core_fixups")
        .unwrap();
    assert_eq!(run_with_context(&prog, &[0; 8]).retval, 0b111001);
}
