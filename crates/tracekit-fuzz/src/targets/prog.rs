//! Targets of tracekit-prog: BPF objects, captures, test vectors, packet specs, hex.

use crate::{Target, files, scratch, text};
use std::time::Duration;
use tracekit_prog::packet::{self, PacketSpec};
use tracekit_prog::{BpfObject, hex, pcap, vectors};

/// The targets of this crate.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "bpf-object",
            about: "BpfObject::from_bytes, then check_parse (aya-obj's parse, its BTF, CO-RE and call relocation)",
            seeds: || files("bpf/obj", ".bpf.o"),
            dictionary: &[
                b"\x7fELF",
                b".BTF",
                b".BTF.ext",
                b"license",
                b"maps",
                b".maps",
                b"xdp",
            ],
            max_len: 64 << 10,
            limit: Duration::from_secs(2),
            run: bpf_object,
        },
        Target {
            name: "bpf-load",
            about: "BpfObject::load of its first two programs: BTF, maps and programs into the kernel (needs BPF)",
            seeds: || files("bpf/obj", ".bpf.o"),
            dictionary: &[
                b"\x7fELF",
                b".BTF",
                b".BTF.ext",
                b"license",
                b".maps",
                b"xdp",
            ],
            max_len: 64 << 10,
            limit: Duration::from_secs(2),
            run: bpf_load,
        },
        Target {
            name: "pcap",
            about: "pcap::read: pcap and pcapng captures, and packet::describe of each frame",
            seeds: capture_seeds,
            dictionary: &[
                b"\x0a\x0d\x0d\x0a",
                b"\x4d\x3c\x2b\x1a",
                b"\xd4\xc3\xb2\xa1",
                b"\xa1\xb2\xc3\xd4",
            ],
            max_len: 16 << 10,
            limit: Duration::from_secs(1),
            run: capture,
        },
        Target {
            name: "vectors",
            about: "vectors::Suite::from_file: test-vector TOML",
            seeds: || files("bpf/vectors", ".toml"),
            dictionary: &[
                b"[[case]]",
                b"expect_retval",
                b"data_hex",
                b"packet",
                b"=",
                b"{",
                b"}",
                b"\"",
                b"'''",
                b"repeat",
            ],
            max_len: 16 << 10,
            limit: Duration::from_secs(1),
            run: |input| drop(vectors::Suite::from_file(scratch("suite.toml", input))),
        },
        Target {
            name: "packet-spec",
            about: "packet::PacketSpec::from_fields and build, then packet::describe of the frame",
            seeds: packet_seeds,
            dictionary: &[
                b"proto=",
                b"\"tcp\"",
                b"\"icmp\"",
                b"ttl=",
                b"payload_hex=",
                b"payload=",
                b"src_mac=",
                b"dst_ip=",
                b",",
                b"\"",
            ],
            max_len: 4 << 10,
            limit: Duration::from_secs(1),
            run: packet_spec,
        },
        Target {
            name: "map-json",
            about: "Program::fill_map: --map NAME=JSON entries (needs BPF: the map is a real one)",
            seeds: || {
                [
                    r#"[{"key": 0, "value": 7}]"#,
                    r#"[{"key": "00000000", "value": "0100000000000000"}]"#,
                    "[]",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect()
            },
            dictionary: &[
                b"\"key\"",
                b"\"value\"",
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b"\"",
                b"-1",
                b"1e3",
                b"18446744073709551616",
            ],
            max_len: 2 << 10,
            limit: Duration::from_millis(200),
            run: map_json,
        },
        Target {
            name: "hex",
            about: "hex::parse: data_hex, ctx_hex and --data-hex",
            seeds: || {
                vec![
                    b"ffffffffffff 020000000001 0806".to_vec(),
                    b"0x00112233".to_vec(),
                    b"de:ad:be:ef".to_vec(),
                ]
            },
            dictionary: &[b"0x", b" ", b":", b"\n"],
            max_len: 1 << 10,
            limit: Duration::from_millis(200),
            run: |input| drop(hex::parse(&text(input))),
        },
    ]
}

/// Listing reads the object with tracekit's own ELF code; `check_parse` runs aya-obj over it.
fn bpf_object(input: &[u8]) {
    if let Ok(object) = BpfObject::from_bytes("fuzz input", input.to_vec()) {
        let _ = object.check_parse();
    }
}

thread_local! {
    /// xdp_count.bpf.o's program, loaded once (its `counts` array map takes the entries);
    /// `None` without the privilege to load it.
    static COUNTER: Option<tracekit_prog::Program> = BpfObject::from_file(crate::workspace().join("bpf/obj/xdp_count.bpf.o"))
        .and_then(|o| o.load("xdp_count"))
        .ok();
}

fn map_json(input: &[u8]) {
    COUNTER.with(|prog| {
        if let Some(prog) = prog {
            let _ = prog.fill_map("counts", &text(input));
        }
    });
}

/// Loads (and so unloads) the object's first two programs: what a damaged object does to map
/// creation, initial values, relocation and the load itself. A refusal by the kernel is fine.
fn bpf_load(input: &[u8]) {
    if let Ok(object) = BpfObject::from_bytes("fuzz input", input.to_vec()) {
        for entry in object.programs().iter().take(2) {
            let _ = object.load(&entry.name);
        }
    }
}

/// The repository's pcap, and the same frames as pcapng (written here: no pcapng is committed).
fn capture_seeds() -> Vec<Vec<u8>> {
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    let mut seeds = files("bpf/vectors", ".pcap");
    let frames = pcap::sample_frames().expect("sample frames");
    let mut writer = PcapNgWriter::new(Vec::new()).expect("pcapng header");
    let idb = InterfaceDescriptionBlock {
        linktype: pcap_file::DataLink::ETHERNET,
        snaplen: 0xffff,
        options: vec![],
    };
    writer.write_pcapng_block(idb).expect("pcapng interface");
    for frame in frames.iter().take(4) {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_micros(1),
            original_len: frame.len() as u32,
            data: frame.as_slice().into(),
            options: vec![],
        };
        writer.write_pcapng_block(epb).expect("pcapng packet");
    }
    seeds.push(writer.into_inner());
    seeds
}

/// A replay describes every frame it read, so damaged frames reach the packet decoder too.
fn capture(input: &[u8]) {
    if let Ok(capture) = pcap::read(&scratch("capture", input)) {
        for p in &capture.packets {
            let _ = packet::describe(&p.data);
            let _ = packet::fields(&p.data);
        }
    }
}

fn packet_seeds() -> Vec<Vec<u8>> {
    [
        r#"proto="udp", dst_port=9999, ttl=1"#,
        r#"proto="tcp", src_port=1234, dst_port=80, tos=0xb8"#,
        r#"proto="icmp", src_ip="192.168.1.1", dst_mac="ff:ff:ff:ff:ff:ff""#,
        r#"payload="hello", payload_hex="00ff""#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn packet_spec(input: &[u8]) {
    if let Ok(spec) = PacketSpec::from_fields(&text(input))
        && let Ok(frame) = spec.build()
    {
        let _ = packet::describe(&frame);
        let _ = packet::fields(&frame);
    }
}
