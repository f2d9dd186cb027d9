//! Test runs of the programs in bpf/ on the real kernel (root): verdicts, output buffers,
//! contexts, errors and benchmarks, through the public API.

use tracekit_prog::packet::{PacketSpec, fields};
use tracekit_prog::{BpfObject, Error, ProgKind, Program, RunOptions, RunOutcome};

fn object(name: &str) -> BpfObject {
    let path = format!("{}/../../bpf/obj/{name}.bpf.o", env!("CARGO_MANIFEST_DIR"));
    BpfObject::from_file(path).unwrap()
}

fn load(obj: &str, prog: &str) -> Program {
    object(obj).load(prog).unwrap()
}

fn run(prog: &Program, data: &[u8]) -> RunOutcome {
    prog.run(&RunOptions {
        data_in: data,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn xdp_drops_the_port_and_passes_the_rest() {
    let prog = load("xdp_port_filter", "xdp_port_filter");
    assert_eq!(prog.kind(), &ProgKind::Xdp);
    let cases = [
        (PacketSpec::udp(1234, 9999), "XDP_DROP"),
        (PacketSpec::tcp(1234, 9999), "XDP_DROP"),
        (PacketSpec::udp(9999, 80), "XDP_PASS"),
        (PacketSpec::tcp(1, 22), "XDP_PASS"),
    ];
    for (spec, want) in cases {
        let pkt = spec.build().unwrap();
        let out = run(&prog, &pkt);
        assert_eq!(prog.verdict(out.retval), want, "{spec:?}");
        assert_eq!(out.data_out, pkt, "the filter must not change the packet");
        assert!(out.duration.is_some());
    }
    assert_eq!(
        run(&prog, &PacketSpec::udp(1, 9999).build().unwrap()).retval,
        1
    );
}

#[test]
fn short_buffer_is_enospc_with_the_true_size() {
    let prog = load("xdp_port_filter", "xdp_port_filter");
    let pkt = PacketSpec::udp(1, 2).build().unwrap();
    assert_eq!(pkt.len(), 42);
    let err = prog
        .run(&RunOptions {
            data_in: &pkt,
            data_out_size: Some(10),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSpace {
                what: "data_out",
                needed: 42,
                given: 10
            }
        ),
        "{err}"
    );
    // A program that grows the packet: tracekit's own sizing fits it, a caller's exact
    // input-size buffer is 4 bytes short.
    let push = load("xdp_port_filter", "xdp_push_tag");
    let out = run(&push, &pkt);
    assert_eq!(push.verdict(out.retval), "XDP_TX");
    assert_eq!(out.data_out.len(), 46);
    assert_eq!(&out.data_out[..4], b"TAG!");
    assert_eq!(&out.data_out[4..], &pkt[..]);
    let err = push
        .run(&RunOptions {
            data_in: &pkt,
            data_out_size: Some(42),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSpace {
                needed: 46,
                given: 42,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn tc_rewrites_tos_and_fixes_the_checksum() {
    let prog = load("tc_dscp_mark", "tc_dscp_mark");
    let pkt = PacketSpec::udp(1, 2).build().unwrap();
    let out = run(&prog, &pkt);
    assert_eq!(prog.verdict(out.retval), "TC_ACT_OK");
    let f = fields(&out.data_out);
    assert_eq!(f["ip.tos"], "184");
    assert_eq!(f["ip.checksum_ok"], "true");
    assert_eq!(
        tracekit_prog::hex::changed_offsets(&pkt, &out.data_out),
        vec![15, 25],
        "only TOS (15) and the low checksum byte (25) change"
    );
    let dying = PacketSpec {
        ttl: 1,
        ..PacketSpec::udp(1, 2)
    }
    .build()
    .unwrap();
    assert_eq!(prog.verdict(run(&prog, &dying).retval), "TC_ACT_SHOT");
}

#[test]
fn socket_filter_keeps_udp_only() {
    let prog = load("sockfilter_udp", "sockfilter_udp");
    let udp = PacketSpec {
        payload: "0123456789".into(),
        ..PacketSpec::udp(1, 2)
    }
    .build()
    .unwrap();
    // A socket filter sees the packet without its Ethernet header: 52 - 14 bytes kept.
    assert_eq!(udp.len(), 52);
    assert_eq!(prog.verdict(run(&prog, &udp).retval), "KEEP 38 bytes");
    assert_eq!(
        prog.verdict(run(&prog, &PacketSpec::tcp(1, 2).build().unwrap()).retval),
        "DROP"
    );
}

#[test]
fn flow_dissector_fills_the_keys() {
    let prog = load("flow_dissector_ipv4", "flow_dissector_ipv4");
    let pkt = PacketSpec::udp(1234, 53).build().unwrap();
    let out = run(&prog, &pkt);
    assert_eq!(prog.verdict(out.retval), "BPF_OK");
    // data_out is struct bpf_flow_keys: nhoff, thoff, addr_proto, is_frag, is_first_frag,
    // is_encap, ip_proto, n_proto, sport, dport, ipv4_src, ipv4_dst, ...
    let k = &out.data_out;
    assert_eq!(k.len(), 56);
    assert_eq!(u16::from_ne_bytes([k[0], k[1]]), 14, "nhoff");
    assert_eq!(u16::from_ne_bytes([k[2], k[3]]), 34, "thoff");
    assert_eq!(k[9], 17, "ip_proto UDP");
    assert_eq!(
        &k[12..16],
        &[0x04, 0xd2, 0x00, 0x35],
        "ports 1234 -> 53, network order"
    );
    assert_eq!(&k[16..24], &[10, 0, 0, 1, 10, 0, 0, 2], "addresses");
    let arp = tracekit_prog::hex::parse("ffffffffffff 020000000001 0806 0001080006040001").unwrap();
    assert_eq!(prog.verdict(run(&prog, &arp).retval), "BPF_DROP");
}

#[test]
fn raw_tp_and_syscall_take_a_context() {
    let prog = load("testrun_rawtp", "testrun_rawtp");
    let ctx: Vec<u8> = [3u64, 4].iter().flat_map(|v| v.to_ne_bytes()).collect();
    let out = prog
        .run(&RunOptions {
            ctx_in: &ctx,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.retval, 7);
    assert_eq!(out.duration, None);
    let prog = load("testrun_syscall", "testrun_syscall");
    let ctx: Vec<u8> = [5u32, 6, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
    let out = prog
        .run(&RunOptions {
            ctx_in: &ctx,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.retval, 7);
    assert_eq!(&out.ctx_out[8..12], &11u32.to_ne_bytes());
}

#[test]
fn bad_input_is_a_clear_error() {
    let prog = load("xdp_port_filter", "xdp_port_filter");
    let err = prog
        .run(&RunOptions {
            data_in: &[0u8; 10],
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("shorter than an Ethernet header"),
        "{err}"
    );
    let err = object("xdp_port_filter").load("nope").unwrap_err();
    assert!(
        err.to_string().contains("xdp_port_filter, xdp_push_tag"),
        "{err}"
    );
    let rawtp = load("testrun_rawtp", "testrun_rawtp");
    let err = rawtp
        .run(&RunOptions {
            ctx_in: &[0u8; 16],
            repeat: 10,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::BadInput { .. }), "{err}");
    let err = rawtp
        .run(&RunOptions {
            data_in: &[0u8; 16],
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("as context"), "{err}");
}

#[test]
fn benchmark_gives_one_sample_per_batch() {
    let prog = load("xdp_port_filter", "xdp_port_filter");
    let pkt = PacketSpec::udp(1, 9999).build().unwrap();
    let b = prog
        .benchmark(
            &RunOptions {
                data_in: &pkt,
                repeat: 50,
                ..Default::default()
            },
            4,
        )
        .unwrap();
    let per_run = b.per_run_ns.unwrap();
    assert_eq!(
        (per_run.count, b.batch_means_ns.len(), b.repeat),
        (4, 4, 50)
    );
    assert!(per_run.min > 0.0 && per_run.min <= per_run.median && per_run.median <= per_run.max);
    assert_eq!(b.wall_per_call_ns.unwrap().count, 4);
    assert!(b.first_call_ns.is_some());
    assert_eq!(prog.verdict(b.result.retval), "XDP_DROP");
}

#[test]
fn repeat_runs_exactly_n_times_and_maps_read_back() {
    let prog = load("xdp_count", "xdp_count");
    let pkt = PacketSpec::udp(1, 2).build().unwrap();
    let b = prog
        .benchmark(
            &RunOptions {
                data_in: &pkt,
                repeat: 250,
                ..Default::default()
            },
            3,
        )
        .unwrap();
    assert_eq!(b.result.retval, 2);
    let map = prog.map("counts").unwrap();
    let counts: aya::maps::Array<_, u64> = aya::maps::Array::try_from(map).unwrap();
    // One cold call of one run, then three calls of 250.
    assert_eq!(counts.get(&0, 0).unwrap(), 1 + 3 * 250);
}

#[test]
fn tracepoint_has_no_test_run() {
    let prog = load("testrun_tracepoint", "testrun_tracepoint");
    let err = prog.run(&RunOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotSupported { .. }), "{err}");
}
