//! Replaying a capture (pcap or pcapng, Ethernet link type) through a program.

use crate::{Error, Program, RunOptions};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One packet of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// The bytes captured.
    pub data: Vec<u8>,
    /// The length on the wire; larger than `data.len()` when the capture's snap length cut it.
    pub orig_len: u32,
}

/// A capture as read: its complete packets, and whether it ended in the middle of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Every complete packet, in order.
    pub packets: Vec<CapturedPacket>,
    /// The file ends inside a packet record (a capture cut short, e.g. tcpdump killed or a file
    /// still being written): that partial packet is left out.
    pub truncated: bool,
}

/// Reads every packet of a pcap or pcapng file. Only Ethernet captures are accepted, since
/// XDP, TC and socket-filter test runs take Ethernet frames. A file that ends inside its last
/// packet gives the complete packets before it (as tcpdump -r does) with
/// [`Capture::truncated`] set; damage anywhere else is an error.
pub fn read(path: &Path) -> Result<Capture, Error> {
    let err = |reason: String| Error::Pcap {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let packets = if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        read_pcapng(&bytes)
    } else {
        read_pcap(&bytes)
    };
    packets.map_err(err)
}

fn ethernet_only(link: DataLink) -> Result<(), String> {
    if link == DataLink::ETHERNET {
        Ok(())
    } else {
        Err(format!(
            "link type {link:?} is not Ethernet; capture on an Ethernet interface or on lo (tcpdump -i lo -w FILE), not on 'any' (Linux cooked)"
        ))
    }
}

/// Whether reading stopped because the data ended inside a record (only the end of the file can
/// cut one short).
fn cut_short(e: &PcapError) -> bool {
    match e {
        PcapError::IncompleteBuffer => true,
        PcapError::IoError(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

fn read_pcap(bytes: &[u8]) -> Result<Capture, String> {
    let mut reader = PcapReader::new(bytes)
        .map_err(|e| format!("not a pcap file ({e}); write one with tcpdump -w FILE"))?;
    ethernet_only(reader.header().datalink)?;
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = match packet {
            Ok(p) => p,
            Err(e) if cut_short(&e) => {
                return Ok(Capture {
                    packets,
                    truncated: true,
                });
            }
            Err(e) => return Err(format!("packet {} is unreadable ({e})", packets.len() + 1)),
        };
        packets.push(CapturedPacket {
            data: packet.data.into_owned(),
            orig_len: packet.orig_len,
        });
    }
    Ok(Capture {
        packets,
        truncated: false,
    })
}

fn read_pcapng(bytes: &[u8]) -> Result<Capture, String> {
    let mut reader = PcapNgReader::new(bytes).map_err(|e| format!("not a pcapng file ({e})"))?;
    let mut packets = Vec::new();
    while let Some(block) = reader.next_block() {
        let block = match block {
            Ok(b) => b,
            Err(e) if cut_short(&e) => {
                return Ok(Capture {
                    packets,
                    truncated: true,
                });
            }
            Err(e) => {
                return Err(format!(
                    "block after packet {} is unreadable ({e})",
                    packets.len()
                ));
            }
        };
        match block {
            Block::InterfaceDescription(idb) => ethernet_only(idb.linktype)?,
            Block::EnhancedPacket(epb) => packets.push(CapturedPacket {
                data: epb.data.into_owned(),
                orig_len: epb.original_len,
            }),
            Block::SimplePacket(spb) => packets.push(CapturedPacket {
                data: spb.data.into_owned(),
                orig_len: spb.original_len,
            }),
            _ => {}
        }
    }
    Ok(Capture {
        packets,
        truncated: false,
    })
}

/// Writes an Ethernet pcap with the given frames, one per millisecond from time zero (for
/// test data that is the same bytes on every run).
pub fn write(path: &Path, frames: &[Vec<u8>]) -> Result<(), Error> {
    let err = |e: &dyn std::fmt::Display| Error::Pcap {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut writer = PcapWriter::new(file).map_err(|e| err(&e))?;
    for (i, frame) in frames.iter().enumerate() {
        let packet = PcapPacket::new(Duration::from_millis(i as u64), frame.len() as u32, frame);
        writer.write_packet(&packet).map_err(|e| err(&e))?;
    }
    Ok(())
}

/// The verdict on one packet of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketVerdict {
    /// 1-based packet number, as Wireshark counts.
    pub packet: usize,
    /// Bytes captured.
    pub len: usize,
    /// What the packet is, e.g. `UDP 10.0.0.1:40000 > 10.0.0.2:9999`.
    pub summary: String,
    /// The program's return value.
    pub retval: u32,
    /// Its name for the program type.
    pub verdict: String,
    /// Whether the program changed the packet.
    pub modified: bool,
    /// Why the packet could not be run (too short, ...), when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of a replay: one verdict per packet and the count per verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// Packets in the capture.
    pub packets: usize,
    /// Packets per verdict name (`error` for packets the kernel could not run).
    pub counts: BTreeMap<String, usize>,
    /// Per-packet verdicts, in capture order.
    pub verdicts: Vec<PacketVerdict>,
}

/// Runs `prog` once on each packet. A packet the kernel refuses (e.g. shorter than an
/// Ethernet header) is counted as `error` with the reason, and the replay goes on; a program
/// that cannot be test-run at all stops it.
pub fn replay(prog: &Program, packets: &[CapturedPacket]) -> Result<Replay, Error> {
    replay_with_progress(prog, packets, |_| {})
}

/// [`replay`], calling `on_packet` with the number of packets done after each.
pub fn replay_with_progress(
    prog: &Program,
    packets: &[CapturedPacket],
    mut on_packet: impl FnMut(usize),
) -> Result<Replay, Error> {
    let mut verdicts = Vec::with_capacity(packets.len());
    let mut counts = BTreeMap::new();
    for (i, packet) in packets.iter().enumerate() {
        let opts = RunOptions {
            data_in: &packet.data,
            ..Default::default()
        };
        let v = match prog.run(&opts) {
            Ok(out) => PacketVerdict {
                packet: i + 1,
                len: packet.data.len(),
                summary: crate::packet::describe(&packet.data),
                retval: out.retval,
                verdict: prog.verdict(out.retval),
                modified: out.data_out != packet.data,
                error: None,
            },
            Err(e @ Error::BadInput { .. }) => PacketVerdict {
                packet: i + 1,
                len: packet.data.len(),
                summary: crate::packet::describe(&packet.data),
                retval: 0,
                verdict: "error".to_owned(),
                modified: false,
                error: Some(e.to_string()),
            },
            Err(e) => return Err(e),
        };
        *counts.entry(v.verdict.clone()).or_insert(0) += 1;
        verdicts.push(v);
        on_packet(i + 1);
    }
    Ok(Replay {
        packets: packets.len(),
        counts,
        verdicts,
    })
}

/// The frames of `bpf/vectors/mixed.pcap`: 5 to port 9999 (dropped by xdp_port_filter), 11
/// others, and one 10-byte runt that no packet program can take.
pub fn sample_frames() -> Result<Vec<Vec<u8>>, Error> {
    use crate::packet::PacketSpec;
    let mut frames = Vec::new();
    let spec = |proto: &str, dst_port: u16| PacketSpec {
        proto: proto.to_owned(),
        dst_port,
        ..PacketSpec::default()
    };
    for (proto, port, count) in [
        ("udp", 9999, 3),
        ("udp", 53, 4),
        ("tcp", 9999, 2),
        ("tcp", 80, 5),
        ("icmp", 0, 1),
    ] {
        for _ in 0..count {
            frames.push(spec(proto, port).build()?);
        }
    }
    frames.push(crate::hex::parse("ffffffffffff 020000000001 0806 0001 0800 0604 0001 020000000001 0a000001 000000000000 0a000002")?);
    frames.push(crate::hex::parse("00112233445566778899")?);
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf/vectors/mixed.pcap")
    }

    /// The committed capture is exactly what `sample_frames` writes (regenerate with
    /// `TRACEKIT_REGEN=1 cargo test -p tracekit-prog committed_capture`).
    #[test]
    fn committed_capture_matches_its_generator() {
        let frames = sample_frames().unwrap();
        if std::env::var_os("TRACEKIT_REGEN").is_some() {
            write(&sample(), &frames).unwrap();
        }
        let capture = read(&sample()).unwrap();
        assert!(!capture.truncated);
        let read_back: Vec<Vec<u8>> = capture.packets.into_iter().map(|p| p.data).collect();
        assert_eq!(read_back, frames);
    }

    #[test]
    fn replay_counts_verdicts() {
        let obj = crate::BpfObject::from_file(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf/obj/xdp_port_filter.bpf.o"),
        )
        .unwrap();
        let prog = obj.load("xdp_port_filter").unwrap();
        let replay = replay(&prog, &read(&sample()).unwrap().packets).unwrap();
        assert_eq!(replay.packets, 17);
        let counts: Vec<(&str, usize)> = replay
            .counts
            .iter()
            .map(|(k, &v)| (k.as_str(), v))
            .collect();
        assert_eq!(
            counts,
            vec![("XDP_DROP", 5), ("XDP_PASS", 11), ("error", 1)]
        );
        assert_eq!(replay.verdicts[0].verdict, "XDP_DROP");
        assert_eq!(replay.verdicts[16].len, 10);
        assert!(
            replay.verdicts[16]
                .error
                .as_deref()
                .unwrap()
                .contains("shorter than an Ethernet header")
        );
    }

    #[test]
    fn not_a_capture_is_an_error() {
        let err = read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("Cargo.toml")
                .as_path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a pcap file"), "{err}");
    }
}
