//! A GDB Remote Serial Protocol client for QEMU's user-mode gdb stub
//! (`qemu-loongarch64-static -g PORT`): what the probe engine needs to reach a LoongArch64
//! program's registers and memory, set breakpoints and run it.
//!
//! Facts about QEMU 7.2's stub for loongarch64, measured here:
//! - `g` returns 35 64-bit registers: `$r0..$r31`, `orig_a0` (32), `pc` (33), `badv` (34);
//!   `P21=` sets the pc (QEMU answers `p`/`P` only after the client read `target.xml`); the FP condition flags are register 0x43, eight bytes, byte `i` =
//!   `fcc{i}`.
//! - `Z0` breakpoints stop the program with `T05` at their address; a `break` instruction in
//!   the program stops it the same way (pc = the `break`).
//! - `s` over a `syscall 0` executes the system call *and the next instruction*; a `Z0` after
//!   the `syscall` stops exactly there (how the engine maps its slot page).
//! - `M` into read-only text fails with `E14`; into a writable page it works, but not into a
//!   page QEMU has already translated (it can crash QEMU): the engine writes its page once.
//! - When the program exits the stub sends `Wxx` and closes the connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::loongarch64::Regs;
use super::target::{Memory, Registers};

/// Why the program stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReply {
    /// Stopped by a signal (5 = SIGTRAP for breakpoints and steps, 2 = SIGINT after an
    /// interrupt).
    Signal {
        /// The signal number.
        signal: u8,
        /// The thread, when the stub says.
        thread: Option<i64>,
    },
    /// The program exited with this status.
    Exited(u8),
    /// The program was killed by this signal.
    Killed(u8),
}

/// One connection to a gdb stub.
#[derive(Debug)]
pub struct GdbRemote {
    stream: TcpStream,
    buf: Vec<u8>,
    ack: bool,
    fcc_needed: bool,
    /// The registers as last read or written: `set_regs` sends only what differs (most traps
    /// change the pc alone), one packet instead of three.
    known: Option<Regs>,
    /// A pc set but not sent yet: the next resume carries it (`c ADDR`), which saves a round
    /// trip on every trap whose handling only moves the pc (simulated branches, slots).
    pending_pc: Option<u64>,
}

const PC: usize = 33;
const FCC: usize = 0x43;
const CHUNK: usize = 2048;

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn hex_u64(s: &str) -> io::Result<u64> {
    u64::from_str_radix(s, 16).map_err(|_| protocol(format!("bad number `{s}` from the stub")))
}

fn from_hex(s: &str) -> io::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(protocol(format!("odd hex length from the stub: `{s}`")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| protocol(format!("bad hex `{s}`"))))
        .collect()
}

fn to_hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

impl GdbRemote {
    /// Connects to `addr` (`HOST:PORT`), retrying until `timeout` (QEMU may still be
    /// starting), and turns acknowledgements off when the stub allows it.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_nodelay(true)?;
        let mut remote = GdbRemote {
            stream,
            buf: Vec::new(),
            ack: true,
            fcc_needed: false,
            known: None,
            pending_pc: None,
        };
        remote.request("qSupported:swbreak+;xmlRegisters=loongarch")?;
        // QEMU answers `p`/`P` (single registers: the pc, the FP condition flags) only to a
        // client that has read the target description.
        remote.request("qXfer:features:read:target.xml:0,ffb")?;
        if remote.request("QStartNoAckMode")? == "OK" {
            remote.ack = false;
        }
        Ok(remote)
    }

    /// Whether `get_regs`/`set_regs` also carry the FP condition flags (one more packet each;
    /// only `bceqz`/`bcnez` need them).
    pub fn set_fcc_needed(&mut self, yes: bool) {
        self.fcc_needed = yes;
        self.known = None;
    }

    fn send(&mut self, payload: &str) -> io::Result<()> {
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        self.stream
            .write_all(format!("${payload}#{sum:02x}").as_bytes())?;
        if self.ack {
            // The stub acknowledges with `+` before any reply; `recv` skips it.
        }
        Ok(())
    }

    /// The next packet's payload; `deadline` None waits forever.
    fn recv(&mut self, deadline: Option<Instant>) -> io::Result<Option<String>> {
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == b'$')
                && let Some(hash) = self.buf[start..].iter().position(|&b| b == b'#')
                && self.buf.len() >= start + hash + 3
            {
                let payload = String::from_utf8_lossy(&self.buf[start + 1..start + hash]).into_owned();
                self.buf.drain(..start + hash + 3);
                if self.ack {
                    self.stream.write_all(b"+")?;
                }
                return Ok(Some(payload));
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            self.stream.set_read_timeout(wait)?;
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the gdb stub closed the connection",
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn reply(&mut self) -> io::Result<String> {
        Ok(self.recv(None)?.expect("no deadline"))
    }

    /// Sends a request and returns the reply; `Exx` replies become errors.
    fn request(&mut self, payload: &str) -> io::Result<String> {
        if let Some(pc) = self.pending_pc.take() {
            // Anything but a resume sees the pc as set.
            self.write_register(PC, &pc.to_le_bytes())?;
        }
        self.send(payload)?;
        let r = self.reply()?;
        if r.len() == 3 && r.starts_with('E') {
            return Err(io::Error::other(format!("the stub refused `{}`: {r}", short(payload))));
        }
        Ok(r)
    }

    fn request_ok(&mut self, payload: &str) -> io::Result<()> {
        match self.request(payload)?.as_str() {
            "OK" => Ok(()),
            "" => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the stub does not support `{}`", short(payload)),
            )),
            other => Err(protocol(format!("unexpected reply `{other}` to `{}`", short(payload)))),
        }
    }

    /// Why the program is stopped (`?`).
    pub fn stop_reason(&mut self) -> io::Result<StopReply> {
        let r = self.request("?")?;
        parse_stop(&r)
    }

    /// Continues the program (with `signal` delivered to it) until it stops.
    pub fn resume(&mut self, signal: Option<u8>) -> io::Result<StopReply> {
        self.resume_until(signal, &AtomicBool::new(false))
    }

    /// Like [`GdbRemote::resume`], but interrupts the program (as gdb's Ctrl-C does) once
    /// `stop` becomes true; it then stops with SIGINT.
    pub fn resume_until(&mut self, signal: Option<u8>, stop: &AtomicBool) -> io::Result<StopReply> {
        self.known = None;
        match (signal, self.pending_pc) {
            (None, Some(pc)) => {
                self.pending_pc = None;
                self.send(&format!("c{pc:x}"))?;
            }
            (None, None) => self.send("c")?,
            // QEMU's `C` takes no address: the pc goes first (`request` sends it).
            (Some(s), _) => {
                if let Some(pc) = self.pending_pc.take() {
                    self.write_register(PC, &pc.to_le_bytes())?;
                }
                self.send(&format!("C{s:02x}"))?;
            }
        }
        let mut interrupted = false;
        loop {
            let deadline = Instant::now() + Duration::from_millis(50);
            if let Some(r) = self.recv(Some(deadline))? {
                if r.starts_with('O') && r != "OK" {
                    continue; // console output
                }
                return parse_stop(&r);
            }
            if !interrupted && stop.load(Ordering::Relaxed) {
                self.stream.write_all(&[0x03])?;
                interrupted = true;
            }
        }
    }

    /// Executes one instruction.
    pub fn step(&mut self) -> io::Result<StopReply> {
        self.known = None;
        let r = self.request("s")?;
        parse_stop(&r)
    }

    /// Sets a breakpoint the stub implements (`Z0`): the text is not modified.
    pub fn insert_breakpoint(&mut self, addr: u64) -> io::Result<()> {
        self.request_ok(&format!("Z0,{addr:x},4"))
    }

    /// Removes a `Z0` breakpoint.
    pub fn remove_breakpoint(&mut self, addr: u64) -> io::Result<()> {
        self.request_ok(&format!("z0,{addr:x},4"))
    }

    /// Lets the program run on without the debugger.
    pub fn detach(&mut self) -> io::Result<()> {
        self.request_ok("D")
    }

    /// Kills the program (the stub closes the connection).
    pub fn kill(&mut self) -> io::Result<()> {
        self.send("k")
    }

    /// The text section's load offset (`qOffsets`), when the stub says.
    pub fn section_offsets(&mut self) -> io::Result<Option<u64>> {
        let r = self.request("qOffsets")?;
        let text = r
            .split(';')
            .find_map(|f| f.strip_prefix("Text="))
            .map(hex_u64)
            .transpose()?;
        Ok(text)
    }

    fn read_register(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let r = self.request(&format!("p{n:x}"))?;
        from_hex(&r)
    }

    fn write_register(&mut self, n: usize, bytes: &[u8]) -> io::Result<()> {
        self.request_ok(&format!("P{n:x}={}", to_hex(bytes)))
    }
}

fn short(payload: &str) -> &str {
    &payload[..payload.len().min(24)]
}

fn parse_stop(r: &str) -> io::Result<StopReply> {
    let code = |s: &str| {
        s.get(1..3)
            .and_then(|c| u8::from_str_radix(c, 16).ok())
            .ok_or_else(|| protocol(format!("bad stop reply `{s}`")))
    };
    match r.as_bytes().first() {
        Some(b'T') | Some(b'S') => {
            let thread = r
                .split(';')
                .find_map(|f| f.strip_prefix("thread:").or_else(|| f.get(3..).and_then(|f| f.strip_prefix("thread:"))))
                .and_then(|t| i64::from_str_radix(t.trim_start_matches('p').split('.').next_back()?, 16).ok());
            Ok(StopReply::Signal {
                signal: code(r)?,
                thread,
            })
        }
        Some(b'W') => Ok(StopReply::Exited(code(r)?)),
        Some(b'X') => Ok(StopReply::Killed(code(r)?)),
        _ => Err(protocol(format!("unexpected stop reply `{r}`"))),
    }
}

impl Memory for GdbRemote {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        for (i, chunk) in buf.chunks_mut(CHUNK).enumerate() {
            let at = addr + (i * CHUNK) as u64;
            let r = self
                .request(&format!("m{at:x},{:x}", chunk.len()))
                .map_err(|e| io::Error::new(e.kind(), format!("reading 0x{at:x}: {e}")))?;
            let data = from_hex(&r)?;
            if data.len() != chunk.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("reading 0x{at:x}: {} of {} bytes", data.len(), chunk.len()),
                ));
            }
            chunk.copy_from_slice(&data);
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let at = addr + (i * CHUNK) as u64;
            self.request_ok(&format!("M{at:x},{:x}:{}", chunk.len(), to_hex(chunk)))
                .map_err(|e| io::Error::new(e.kind(), format!("writing 0x{at:x}: {e}")))?;
        }
        Ok(())
    }
}

impl Registers<Regs> for GdbRemote {
    fn get_regs(&mut self, _tid: i32) -> io::Result<Regs> {
        let g = from_hex(&self.request("g")?)?;
        let word = |i: usize| {
            g.get(8 * i..8 * i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| protocol(format!("`g` reply of {} bytes has no register {i}", g.len())))
        };
        let mut regs = Regs::default();
        for (i, r) in regs.gpr.iter_mut().enumerate() {
            *r = word(i)?;
        }
        regs.pc = word(PC)?;
        if self.fcc_needed {
            let fcc = self.read_register(FCC)?;
            regs.fcc = fcc.iter().take(8).enumerate().fold(0, |a, (i, &b)| a | (b & 1) << i);
        }
        self.known = Some(regs);
        Ok(regs)
    }

    fn set_regs(&mut self, _tid: i32, regs: &Regs) -> io::Result<()> {
        let known = self.known.take();
        if known.is_none_or(|k| k.gpr != regs.gpr) {
            let gprs: Vec<u8> = regs.gpr.iter().flat_map(|r| r.to_le_bytes()).collect();
            self.request_ok(&format!("G{}", to_hex(&gprs)))?;
        }
        if known.is_none_or(|k| k.pc != regs.pc) {
            self.pending_pc = Some(regs.pc);
        }
        if self.fcc_needed && known.is_none_or(|k| k.fcc != regs.fcc) {
            let bytes: Vec<u8> = (0..8).map(|i| regs.fcc >> i & 1).collect();
            self.write_register(FCC, &bytes)?;
        }
        self.known = Some(*regs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_replies() {
        assert_eq!(
            parse_stop("T05thread:01;").unwrap(),
            StopReply::Signal { signal: 5, thread: Some(1) }
        );
        assert_eq!(parse_stop("S02").unwrap(), StopReply::Signal { signal: 2, thread: None });
        assert_eq!(parse_stop("W03").unwrap(), StopReply::Exited(3));
        assert_eq!(parse_stop("X09").unwrap(), StopReply::Killed(9));
        assert!(parse_stop("OK").is_err());
    }
}
