//! The gdb-remote target: a fake gdb stub on the loopback answers the client's requests with
//! the input's replies, one line each, so every reply parser of [`GdbRemote`] sees damage.

use crate::Target;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;
use tracekit_probe::breakpoint::arch::loongarch64::LoongArch64;
use tracekit_probe::breakpoint::transport::gdb::remote::GdbRemote;
use tracekit_probe::breakpoint::transport::{Memory, Registers};

/// The target.
pub fn target() -> Target {
    Target {
        name: "gdb-remote",
        about: "GdbRemote (loongarch64) against a fake stub replying with damaged packets",
        seeds,
        dictionary: &[
            b"\n",
            b"\t",
            b"T05",
            b"thread:",
            b"p01.",
            b"W00",
            b"X09",
            b"OK",
            b"E14",
            b"*",
            b"}",
            b"#",
            b"$",
            b"!",
            b"PacketSize=",
            b";",
            b"qXfer:features:read+",
            b"QStartNoAckMode+",
            b"QC",
            b"l",
            b"m",
        ],
        max_len: 8 << 10,
        limit: Duration::from_secs(1),
        run,
    }
}

/// Drives the client through what the probe engine does: connect (qSupported, no-ack mode,
/// target.xml, qC), the stop reason, registers (with the on-demand FP flags), memory,
/// breakpoints, a resume and a step, the section offsets, then kill. Errors are expected;
/// each step runs whatever the ones before did.
fn run(input: &[u8]) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback listener");
    let addr = listener.local_addr().expect("listener address").to_string();
    let replies: Vec<Vec<u8>> = input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let stub = std::thread::spawn(move || serve(&listener, replies));
    if let Ok(mut remote) = GdbRemote::<LoongArch64>::connect(&addr, Duration::from_secs(1)) {
        remote.set_on_demand(true);
        let _ = remote.stop_reason();
        let regs = remote.get_regs(0);
        let mut buf = [0u8; 32];
        let _ = remote.read(0x1_2000_0000, &mut buf);
        let _ = remote.insert_breakpoint(0x1_2000_0104);
        if let Ok(mut regs) = regs {
            regs.gpr[4] ^= 1;
            regs.pc += 4;
            let _ = remote.set_regs(0, &regs);
        }
        let _ = remote.resume(None);
        let _ = remote.step();
        let _ = remote.section_offsets();
        let _ = remote.write(0x1_2000_0000, &[0; 8]);
        let _ = remote.remove_breakpoint(0x1_2000_0104);
        let _ = remote.kill();
    }
    stub.join().expect("fake stub");
}

/// Answers each request with the next line of replies (see [`frame`]; a packet with a leading
/// `!` goes out raw, unframed), and with no lines left closes the connection. A client that
/// sends nothing for 100 ms is waiting for a reply the input does not have: the stub closes.
fn serve(listener: &TcpListener, replies: Vec<Vec<u8>>) {
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut replies = replies.into_iter();
    let mut rx = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        while let Some(end) = request_end(&rx) {
            rx.drain(..end);
            let Some(reply) = replies.next() else {
                return hang_up(stream);
            };
            if stream.write_all(&frame(&reply)).is_err() {
                return;
            }
        }
        match stream.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => rx.extend_from_slice(&tmp[..n]),
        }
    }
}

/// The end of the first request in `rx`: a complete `$...#xx` packet, or a `-` (the client
/// asks for the last reply again; it gets the next one, so the input decides).
fn request_end(rx: &[u8]) -> Option<usize> {
    let start = rx.iter().position(|&b| b == b'$' || b == b'-')?;
    if rx[start] == b'-' {
        return Some(start + 1);
    }
    let hash = start + rx[start..].iter().position(|&b| b == b'#')?;
    (rx.len() >= hash + 3).then_some(hash + 3)
}

/// One line's bytes on the wire: an acknowledgement, then each tab-separated packet (several
/// answer one request: console output before a stop reply, a second stop reply).
fn frame(line: &[u8]) -> Vec<u8> {
    let mut out = b"+".to_vec();
    for packet in line.split(|&b| b == b'\t') {
        if let Some(raw) = packet.strip_prefix(b"!") {
            out.extend_from_slice(raw);
            continue;
        }
        let sum = packet.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        out.push(b'$');
        out.extend_from_slice(packet);
        out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    }
    out
}

/// Closes the stub's side, then reads until the client closes its own (no reset).
fn hang_up(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut tmp = [0u8; 4096];
    while matches!(stream.read(&mut tmp), Ok(n) if n > 0) {}
}

/// Replies as QEMU 7.2 gives them (ack mode, one `g` of 35 registers), and as a stub with
/// no-ack mode, multiprocess thread ids, console output and run-length encoding would.
fn seeds() -> Vec<Vec<u8>> {
    let g: String = (0..35u64)
        .map(|i| {
            let v = if i == 33 { 0x1_2000_0100 } else { i * 0x1111 };
            v.to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .collect();
    let xml = "l<?xml version=\"1.0\"?><target><architecture>loongarch64</architecture></target>";
    let mem = "00".repeat(32);
    let qemu = [
        "PacketSize=1000;qXfer:features:read+;qXfer:auxv:read+;vContSupported+;multiprocess+",
        xml,
        "QC1f4",
        "T05thread:1f4;",
        &g,
        "0000000100000001",
        &mem,
        "OK",
        "OK",
        "OK",
        "T05thread:1f4;",
        "T05thread:1f4;",
        "Text=0;Data=0;Bss=0",
        "OK",
        "OK",
        "W00",
    ];
    let other = [
        "PacketSize=400;QStartNoAckMode+;qXfer:features:read+",
        "OK",
        "m<?xml",
        "l version=\"1.0\"?>",
        "QCp01.1f4",
        "T05thread:p01.1f4;",
        "0* 1* ",
        "01",
        "0*~",
        "OK",
        "E14",
        "OK",
        "O48656c6c6f0a\tT05thread:p01.1f5;05:00000000;",
        "S05",
        "TextSeg=10000",
        "OK",
        "E22",
        "X09",
    ];
    let exit = ["PacketSize=1000", "QC1", "W03"];
    [&qemu[..], &other[..], &exit[..]]
        .iter()
        .map(|lines| lines.join("\n").into_bytes())
        .collect()
}
