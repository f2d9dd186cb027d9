//! A GDB Remote Serial Protocol client for QEMU's user-mode gdb stub (`qemu-ARCH-static -g
//! PORT`): what the probe engine needs to reach a program's registers and memory, set
//! breakpoints and run it. Generic over the architecture `A`: its [`GdbRegisters`] says how
//! its registers travel; everything else here is the protocol.
//!
//! # QEMU 7.2's stub, as measured here
//!
//! Measured against `qemu-loongarch64-static` 7.2.22 (Debian 12) running
//! `testdata/loongarch/hello.c`, first with a throw-away Python client speaking raw packets,
//! then by `tests/gdb_remote.rs` (which asserts each of these facts):
//! - **Negotiation.** `qSupported` answers
//!   `PacketSize=1000;qXfer:features:read+;qXfer:auxv:read+;vContSupported+;multiprocess+`.
//!   No `QStartNoAckMode`: the stub stays in acknowledgement mode and waits for our `+` after
//!   every packet it sends (after `k` and at exit too: without the `+` QEMU never exits).
//! - **Registers.** `g`/`G` carry the general registers (the layout is the architecture's:
//!   [`GdbRegisters`], e.g. `arch/loongarch64/gdb.rs`). `p`/`P` are answered (empty reply
//!   otherwise) only once the client has read `target.xml`.
//! - **Memory.** `m` of at most 0x800 bytes (the reply fills the 4096-byte packet); 0x1000
//!   answers `E22`. An `M` packet longer than 4096 bytes is dropped *silently* (no reply: 2030
//!   data bytes work, 2040 hang), so transfers are chunked at `(PacketSize - 64) / 2` = 2016
//!   bytes. Unmapped addresses: `E14`. `X` (binary write) is not supported (empty reply).
//! - **`M` to the read-only text** answers `E14` (QEMU only writes pages that are writable
//!   now). `M` into a fresh RWX page made by an injected `mmap` works before the page has run,
//!   and the code written there runs. Once QEMU has translated the page it write-protects it:
//!   `M` then answers `E14`, until an injected `mprotect(RWX)` makes it writable again (QEMU
//!   drops its translations then: rewritten code runs as rewritten).
//! - **Breakpoints.** `Z0,ADDR,4` works anywhere (the text is not modified) and stops the
//!   program with `T05` before the instruction at ADDR. Continuing (`c`) from a pc that
//!   has a `Z0` reports it again at once without executing anything (QEMU checks breakpoints
//!   when it translates the next block): [`GdbRemote::resume`] therefore steps over the
//!   breakpoint the thread is stopped on (`z0`, `s`, `Z0`) unless the pc was moved. `s` on a
//!   `Z0` address executes the instruction normally.
//! - **`s` over `syscall 0` executes the system call (mmap: a0 = the new page) *and the next
//!   instruction*:** over `syscall 0; ret` it stops at `ra`. To stop right after a system
//!   call, put a `Z0` on the next instruction and continue.
//! - **A `break 0` in the program** stops it with `T05`, pc = the `break` itself (not after
//!   it); continuing executes it again (same stop); `C05` delivers SIGTRAP: `X05`, QEMU dumps
//!   core and exits (status: killed by signal 5).
//! - **Exit.** The stub sends `W03` (exit code 3), waits for the `+`, exits, and the
//!   connection closes (EOF). `k` prints "QEMU: Terminated via GDBstub", answers `W00`, and
//!   QEMU exits with status 0 once acknowledged. `D` answers `OK`; the program runs on
//!   without breakpoints, but at its exit QEMU still sends `Wxx` and waits for the `+`
//!   unless the connection is closed: [`GdbRemote::detach`] closes it.
//! - **Thread ids.** Without `multiprocess+` from the client, stop replies are
//!   `T05thread:TID;` with TID = the host thread id of the QEMU thread running the guest
//!   thread (QEMU's pid for the main thread); with it, `thread:p01.TID`. `qC` and
//!   `qfThreadInfo` agree.
//! - **`qOffsets`** for the static non-PIE test program: `Text=0;Data=0;Bss=0` (`Some(0)`).
//! - **Interrupting.** A `0x03` byte while the program runs is **ignored** (no stop in 15 s):
//!   QEMU does not read the socket while the guest runs. It stays buffered: at the next stop
//!   QEMU reads it and sends the stop reply a second time. A host SIGINT sent to the QEMU
//!   process stops the guest with `T02` (QEMU intercepts it; continuing without a signal
//!   drops it and the program never sees it; a second SIGINT while it is stopped stays pending:
//!   `c` stops again at once with `T02`, `D` drops it). So [`GdbRemote::interrupt`] signals the
//!   QEMU process when it knows it ([`InterruptBy`]), and sends `0x03` only to other stubs.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{GdbRegisters, RegisterIo};
use crate::breakpoint::transport::{Memory, Registers};

/// Why the program stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReply {
    /// Stopped by a signal (5 = SIGTRAP for breakpoints, steps and `break 0`; 2 = SIGINT after
    /// an interrupt).
    Signal {
        /// The signal number.
        signal: u8,
        /// The thread that stopped, when the stub says (QEMU: its host thread id).
        thread: Option<i64>,
    },
    /// The program exited with this status; the stub closes the connection.
    Exited(u8),
    /// The program was killed by this signal; the stub closes the connection.
    Killed(u8),
}

/// One connection to a gdb stub, driving one all-stop program.
///
/// Register reads are cached until the program runs again, and register writes send only what
/// changed; a pc change alone travels with the next `c`/`s` (`c ADDR`), so a trap whose
/// handling only moves the pc costs no extra round trip.
#[derive(Debug)]
pub struct GdbRemote<A: GdbRegisters> {
    stream: TcpStream,
    peer: SocketAddr,
    /// Received bytes not parsed yet.
    rx: Vec<u8>,
    /// Read timeout currently set on the socket (saves a system call per poll).
    read_timeout: Option<Duration>,
    ack: bool,
    /// Largest data chunk of one `m`/`M` packet.
    chunk: usize,
    target_xml: Option<String>,
    breakpoints: BTreeSet<u64>,
    /// Whether register reads and writes carry the on-demand registers.
    on_demand: bool,
    layout: A::Layout,
    /// The registers as the stub has them at this stop (pc: see `pending_pc`).
    known: Option<A::Regs>,
    /// Whether `known`'s on-demand registers were read or written.
    known_on_demand: bool,
    /// The pc where the program stopped, once known (read lazily).
    stop_pc: Option<u64>,
    /// A pc set but not sent yet: the next resume or step carries it (`c ADDR`).
    pending_pc: Option<u64>,
    /// The thread the stub's register commands refer to.
    thread: Option<i64>,
    interrupt_by: InterruptBy,
    /// A `0x03` was sent: the stub may send one stop reply too many (QEMU 7.2 does).
    stale_stop: bool,
    /// Set once the program exited, was killed, or we detached: the connection is over.
    finished: Option<String>,
}

/// How [`GdbRemote::interrupt`] stops a running program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterruptBy {
    /// SIGINT to the QEMU process when the stub is one on this machine (on the loopback, and
    /// the thread it reports is a local process named `qemu-*`), else the `0x03` byte.
    #[default]
    Auto,
    /// SIGINT to this process: the QEMU running the program.
    Sigint(i32),
    /// The protocol's `0x03` byte only (QEMU 7.2 user mode ignores it while the program runs).
    Byte,
}

/// How long a request waits for its reply before the stub is declared unresponsive.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `resume_until` looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long `resume_until` waits for an interrupted program to stop.
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);
/// How long a possible duplicate stop reply (after a `0x03`) is waited for before a resume.
const STALE_STOP_WAIT: Duration = Duration::from_millis(100);
const SIGTRAP: u8 = 5;

impl<A: GdbRegisters> GdbRemote<A> {
    /// Connects to `addr` (`HOST:PORT`), retrying until `timeout` (QEMU may still be
    /// starting), negotiates `qSupported`, turns acknowledgements off when the stub offers
    /// `QStartNoAckMode`, and reads `target.xml` (QEMU answers `p`/`P` only after that).
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Self> {
        let stream = connect_retrying(addr, timeout)?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let mut remote = GdbRemote {
            stream,
            peer,
            rx: Vec::new(),
            read_timeout: None,
            ack: true,
            chunk: chunk_for(1024),
            target_xml: None,
            breakpoints: BTreeSet::new(),
            on_demand: false,
            layout: A::Layout::default(),
            known: None,
            known_on_demand: false,
            stop_pc: None,
            pending_pc: None,
            thread: None,
            interrupt_by: InterruptBy::Auto,
            stale_stop: false,
            finished: None,
        };
        remote.negotiate()?;
        Ok(remote)
    }

    fn negotiate(&mut self) -> io::Result<()> {
        let features = self.request("qSupported:swbreak+;hwbreak+")?;
        let has = |name: &str| features.split(';').any(|f| f == format!("{name}+"));
        if let Some(size) = features
            .split(';')
            .find_map(|f| f.strip_prefix("PacketSize="))
        {
            self.chunk = chunk_for(hex_u64(size)? as usize);
        }
        if has("QStartNoAckMode") && self.request("QStartNoAckMode")? == "OK" {
            self.ack = false;
        }
        if has("qXfer:features:read") {
            self.target_xml = Some(self.read_xfer("features", "target.xml")?);
        }
        // The current thread, so that an interrupt can find QEMU before the first stop reply.
        if let Some(tid) = self.request("qC")?.strip_prefix("QC") {
            self.thread = Some(parse_thread(tid)?);
        }
        Ok(())
    }

    /// The stub's target description (`qXfer:features:read:target.xml`), when it has one.
    pub fn target_xml(&self) -> Option<&str> {
        self.target_xml.as_deref()
    }

    /// Whether `get_regs`/`set_regs` also carry the architecture's on-demand registers
    /// ([`GdbRegisters`]; LoongArch: the FP condition flags, which only `bceqz`/`bcnez`
    /// need), at one more packet or more each. Without, `get_regs` returns them zero and
    /// `set_regs` ignores them.
    pub fn set_on_demand(&mut self, yes: bool) {
        self.on_demand = yes;
    }

    /// How [`GdbRemote::interrupt`] stops the program (default [`InterruptBy::Auto`]). Give
    /// QEMU's pid when it runs on this machine but behind an address that is not the loopback.
    pub fn set_interrupt_by(&mut self, by: InterruptBy) {
        self.interrupt_by = by;
    }

    /// Why the program is stopped (`?`).
    pub fn stop_reason(&mut self) -> io::Result<StopReply> {
        self.check_live()?;
        self.send_packet("?")?;
        let reply = self.wait_stop(None, &AtomicBool::new(false))?;
        Ok(reply)
    }

    /// Continues the program (with `signal` delivered to it) until it stops. If the thread is
    /// stopped on one of our breakpoints and its pc was not moved, the breakpoint is stepped
    /// over first (QEMU would report it again at once).
    pub fn resume(&mut self, signal: Option<u8>) -> io::Result<StopReply> {
        self.resume_until(signal, &AtomicBool::new(false))
    }

    /// Like [`GdbRemote::resume`], but once `stop` becomes true (a Ctrl-C handler sets it)
    /// interrupts the program with [`GdbRemote::interrupt`] and returns the resulting stop:
    /// normally `Signal { signal: 2 }`; a stop that raced with the interrupt comes back as
    /// is (QEMU then keeps the SIGINT pending and reports it on the next resume). Fails with
    /// `TimedOut` when the program has not stopped 3 s after the interrupt (a remote QEMU
    /// whose process cannot be signalled).
    pub fn resume_until(&mut self, signal: Option<u8>, stop: &AtomicBool) -> io::Result<StopReply> {
        self.check_live()?;
        self.drain_stale_stop()?;
        let mut signal = signal;
        if let Some(reply) = self.step_off_breakpoint(&mut signal)? {
            return Ok(reply);
        }
        let packet = match (signal, self.pending_pc.take()) {
            (None, Some(pc)) => format!("c{pc:x}"),
            (None, None) => "c".to_string(),
            (Some(s), pc) => {
                // `C sig;addr` is not accepted by QEMU: the pc goes first.
                if let Some(pc) = pc {
                    self.write_register(A::PC_REGNUM, &pc.to_le_bytes())?;
                }
                format!("C{s:02x}")
            }
        };
        self.forget_stop();
        self.send_packet(&packet)?;
        self.wait_stop(Some(POLL), stop)
    }

    /// Executes one instruction (`s`). Over a `syscall 0`, QEMU executes the next instruction
    /// too (see the module documentation).
    pub fn step(&mut self) -> io::Result<StopReply> {
        self.check_live()?;
        self.drain_stale_stop()?;
        self.step_with(None)
    }

    fn step_with(&mut self, signal: Option<u8>) -> io::Result<StopReply> {
        let packet = match (signal, self.pending_pc.take()) {
            (None, Some(pc)) => format!("s{pc:x}"),
            (None, None) => "s".to_string(),
            (Some(s), pc) => {
                if let Some(pc) = pc {
                    self.write_register(A::PC_REGNUM, &pc.to_le_bytes())?;
                }
                format!("S{s:02x}")
            }
        };
        self.forget_stop();
        self.send_packet(&packet)?;
        self.wait_stop(None, &AtomicBool::new(false))
    }

    /// Steps over the breakpoint the thread stopped on, if it is still there; returns the stop
    /// if that step ended anywhere but the next instruction's trap (exit, signal). `signal`
    /// is delivered with the step and consumed.
    fn step_off_breakpoint(&mut self, signal: &mut Option<u8>) -> io::Result<Option<StopReply>> {
        if self.breakpoints.is_empty() {
            return Ok(None);
        }
        let pc = match (self.pending_pc, self.known) {
            (Some(pc), _) => pc,
            (None, Some(k)) => A::pc(&k),
            (None, None) => self.read_pc()?,
        };
        if self.stop_pc != Some(pc) || !self.breakpoints.contains(&pc) {
            return Ok(None);
        }
        self.request_ok(&format!("z0,{pc:x},{}", A::BREAKPOINT.len()))?;
        let reply = self.step_with(signal.take())?;
        if self.finished.is_none() {
            self.request_ok(&format!("Z0,{pc:x},{}", A::BREAKPOINT.len()))?;
        }
        match reply {
            StopReply::Signal {
                signal: SIGTRAP, ..
            } => Ok(None),
            other => Ok(Some(other)),
        }
    }

    /// Stops the running program, as gdb's Ctrl-C does: SIGINT to the QEMU process when it is
    /// known or can be found (QEMU reports `T02` and keeps the signal from the program),
    /// else the `0x03` byte. Meant for while the program runs ([`GdbRemote::resume_until`]
    /// calls it); sent while it is stopped, QEMU's SIGINT stops the next resume at once.
    pub fn interrupt(&mut self) -> io::Result<()> {
        let pid = match self.interrupt_by {
            InterruptBy::Auto => self.local_qemu_pid(),
            InterruptBy::Sigint(pid) => Some(pid),
            InterruptBy::Byte => None,
        };
        match pid.filter(|&p| p > 0) {
            Some(pid) => {
                // SAFETY: kill has no memory-safety preconditions.
                if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("sending SIGINT to QEMU (pid {pid}): {e}"),
                    ));
                }
                Ok(())
            }
            None => {
                self.stale_stop = true;
                self.stream.write_all(&[0x03])
            }
        }
    }

    /// The QEMU process behind a stub on this machine: the main thread QEMU reports is its
    /// host thread, a local process whose name starts with `qemu-`.
    fn local_qemu_pid(&self) -> Option<i32> {
        if !self.peer.ip().is_loopback() {
            return None;
        }
        let tid = i32::try_from(self.thread?).ok().filter(|&t| t > 0)?;
        let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).ok()?;
        comm.starts_with("qemu-").then_some(tid)
    }

    /// Sets a breakpoint the stub implements (`Z0,ADDR,KIND`, the kind being the size of the
    /// architecture's breakpoint): the text is not modified.
    pub fn insert_breakpoint(&mut self, addr: u64) -> io::Result<()> {
        self.request_ok(&format!("Z0,{addr:x},{}", A::BREAKPOINT.len()))?;
        self.breakpoints.insert(addr);
        Ok(())
    }

    /// Removes a `Z0` breakpoint.
    pub fn remove_breakpoint(&mut self, addr: u64) -> io::Result<()> {
        self.request_ok(&format!("z0,{addr:x},{}", A::BREAKPOINT.len()))?;
        self.breakpoints.remove(&addr);
        Ok(())
    }

    /// Lets the program run on without the debugger (`D`; the stub removes its breakpoints),
    /// and closes the connection: QEMU 7.2 would otherwise still send `Wxx` when the program
    /// exits and wait for our acknowledgement forever.
    pub fn detach(&mut self) -> io::Result<()> {
        self.request_ok("D")?;
        self.breakpoints.clear();
        self.finished = Some("the client detached".into());
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        Ok(())
    }

    /// Kills the program (`k`; QEMU exits once it has our acknowledgement of its `W00`).
    /// Nothing to do when it has already ended.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.finished.is_some() {
            return Ok(());
        }
        // QEMU answers `W00` and exits once that is acknowledged (recv_packet does); other
        // stubs may just close.
        let killed = self
            .send_packet("k")
            .and_then(|()| self.recv_packet(Some(Instant::now() + REPLY_TIMEOUT)));
        self.finished = Some("the program was killed".into());
        match killed {
            Err(e) if !is_closed(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The text section's load offset (`qOffsets` `Text=`/`TextSeg=`), `None` when the stub
    /// does not say.
    pub fn section_offsets(&mut self) -> io::Result<Option<u64>> {
        let reply = self.request("qOffsets")?;
        reply
            .split(';')
            .find_map(|f| {
                f.strip_prefix("Text=")
                    .or_else(|| f.strip_prefix("TextSeg="))
            })
            .map(hex_u64)
            .transpose()
    }

    fn read_xfer(&mut self, object: &str, annex: &str) -> io::Result<String> {
        let mut out = String::new();
        let len = self.chunk;
        loop {
            let reply = self.request(&format!(
                "qXfer:{object}:read:{annex}:{:x},{len:x}",
                out.len()
            ))?;
            let (last, data) = match reply.split_at_checked(1) {
                Some(("l", d)) => (true, d),
                Some(("m", d)) => (false, d),
                _ => {
                    return Err(protocol(format!(
                        "unexpected reply `{}` reading {annex}",
                        short(&reply)
                    )));
                }
            };
            out.push_str(&unescape_binary(data));
            if last || data.is_empty() {
                return Ok(out);
            }
        }
    }

    // --- registers --------------------------------------------------------------------

    fn select_thread(&mut self, tid: i32) -> io::Result<()> {
        let tid = i64::from(tid);
        if tid <= 0 || self.thread == Some(tid) {
            return Ok(());
        }
        self.flush_pc()?;
        self.request_ok(&format!("Hg{tid:x}"))?;
        self.thread = Some(tid);
        self.known = None;
        self.known_on_demand = false;
        self.stop_pc = None;
        Ok(())
    }

    fn read_all(&mut self) -> io::Result<A::Regs> {
        let g = from_hex(&self.request("g")?)?;
        let regs = A::from_g(&g).map_err(protocol)?;
        if self.pending_pc.is_none() {
            self.stop_pc.get_or_insert(A::pc(&regs));
        }
        Ok(regs)
    }

    fn read_pc(&mut self) -> io::Result<u64> {
        let regs = self.read_all()?;
        self.known = Some(regs);
        self.known_on_demand = false;
        Ok(A::pc(&regs))
    }

    /// Sends a pc set by `set_regs` before a request that must see it.
    fn flush_pc(&mut self) -> io::Result<()> {
        if let Some(pc) = self.pending_pc.take() {
            self.write_register(A::PC_REGNUM, &pc.to_le_bytes())?;
        }
        Ok(())
    }

    // --- packets ----------------------------------------------------------------------

    fn check_live(&self) -> io::Result<()> {
        match &self.finished {
            None => Ok(()),
            Some(why) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("the gdb connection is over: {why}"),
            )),
        }
    }

    /// Sends a request (not a resume) and returns its reply; `Exx` replies become errors.
    fn request(&mut self, payload: &str) -> io::Result<String> {
        self.check_live()?;
        // Only what reads registers or ends the session must see a pc still pending.
        if payload.starts_with(['g', 'p', 'D', 'H']) {
            self.flush_pc()?;
        }
        self.send_packet(payload)?;
        loop {
            let reply = self
                .recv_packet(Some(Instant::now() + REPLY_TIMEOUT))?
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the gdb stub did not answer `{}` within {REPLY_TIMEOUT:?}",
                            short(payload)
                        ),
                    )
                })?;
            if self.stale_stop && reply.starts_with(['T', 'S']) {
                self.stale_stop = false; // QEMU's answer to a 0x03 it read late
                continue;
            }
            if is_error(&reply) {
                return Err(stub_error(&reply, format!("`{}`", short(payload))));
            }
            return Ok(reply);
        }
    }

    fn request_ok(&mut self, payload: &str) -> io::Result<()> {
        match self.request(payload)?.as_str() {
            "OK" => Ok(()),
            "" => Err(unsupported(format!(
                "the gdb stub does not support `{}`",
                short(payload)
            ))),
            other => Err(protocol(format!(
                "unexpected reply `{}` to `{}`",
                short(other),
                short(payload)
            ))),
        }
    }

    /// Before a resume, takes the second stop reply a stub may send after a `0x03`.
    fn drain_stale_stop(&mut self) -> io::Result<()> {
        if self.stale_stop {
            self.stale_stop = false;
            self.recv_packet(Some(Instant::now() + STALE_STOP_WAIT))?;
        }
        Ok(())
    }

    fn forget_stop(&mut self) {
        self.known = None;
        self.known_on_demand = false;
        self.stop_pc = None;
    }

    /// Waits for a stop reply. With `poll`, wakes up that often to look at `stop` and
    /// interrupts the program once it is set.
    fn wait_stop(&mut self, poll: Option<Duration>, stop: &AtomicBool) -> io::Result<StopReply> {
        let mut interrupted: Option<Instant> = None;
        loop {
            let deadline = poll.map(|p| Instant::now() + p);
            match self.recv_packet(deadline)? {
                Some(p) if p.starts_with('O') && p != "OK" => continue, // console output
                Some(p) => return self.stopped(&p),
                None => {}
            }
            match interrupted {
                None if stop.load(Ordering::Relaxed) => {
                    self.interrupt()?;
                    interrupted = Some(Instant::now());
                }
                Some(at) if at.elapsed() > INTERRUPT_GRACE => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the program did not stop within {INTERRUPT_GRACE:?} of the interrupt (QEMU 7.2 ignores 0x03 while the program runs; give QEMU's pid to set_interrupt_by)"
                        ),
                    ));
                }
                _ => {}
            }
        }
    }

    fn stopped(&mut self, packet: &str) -> io::Result<StopReply> {
        let reply = parse_stop(packet)?;
        self.forget_stop();
        match reply {
            StopReply::Signal {
                thread: Some(t), ..
            } => self.thread = Some(t),
            StopReply::Signal { thread: None, .. } => {}
            StopReply::Exited(code) => {
                self.finished = Some(format!("the program exited with status {code}"))
            }
            StopReply::Killed(sig) => {
                self.finished = Some(format!("the program was killed by signal {sig}"))
            }
        }
        Ok(reply)
    }

    fn send_packet(&mut self, payload: &str) -> io::Result<()> {
        let frame = format!("${payload}#{:02x}", checksum(payload.as_bytes()));
        for _ in 0..3 {
            self.stream.write_all(frame.as_bytes())?;
            if !self.ack || self.wait_ack()? {
                return Ok(());
            }
        }
        Err(protocol(format!(
            "the gdb stub rejected `{}` three times",
            short(payload)
        )))
    }

    /// Waits for the stub's `+` (true) or `-` (false). A packet arriving first counts as `+`.
    fn wait_ack(&mut self) -> io::Result<bool> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            while let Some(&b) = self.rx.first() {
                match b {
                    b'+' | b'-' => {
                        self.rx.remove(0);
                        return Ok(b == b'+');
                    }
                    b'$' => return Ok(true),
                    _ => {
                        self.rx.remove(0);
                    }
                }
            }
            if !self.fill(Some(deadline))? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the gdb stub did not acknowledge a packet",
                ));
            }
        }
    }

    /// The next packet's payload (acknowledged), or `None` at `deadline`; no deadline waits
    /// forever.
    fn recv_packet(&mut self, deadline: Option<Instant>) -> io::Result<Option<String>> {
        loop {
            if let Some(packet) = self.take_packet()? {
                return Ok(Some(packet));
            }
            if !self.fill(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Parses one complete packet out of `rx`, skipping acknowledgements and notifications.
    fn take_packet(&mut self) -> io::Result<Option<String>> {
        loop {
            let Some(start) = self.rx.iter().position(|&b| b == b'$' || b == b'%') else {
                self.rx.clear();
                return Ok(None);
            };
            let Some(hash) = self.rx[start..]
                .iter()
                .position(|&b| b == b'#')
                .map(|h| start + h)
            else {
                self.rx.drain(..start);
                return Ok(None);
            };
            if self.rx.len() < hash + 3 {
                self.rx.drain(..start);
                return Ok(None);
            }
            let body = self.rx[start + 1..hash].to_vec();
            let sum = std::str::from_utf8(&self.rx[hash + 1..hash + 3])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok());
            let notification = self.rx[start] == b'%';
            self.rx.drain(..hash + 3);
            if notification {
                continue; // non-stop notifications: not used in all-stop mode
            }
            if sum != Some(checksum(&body)) {
                if self.ack {
                    self.stream.write_all(b"-")?;
                }
                continue;
            }
            if self.ack {
                self.stream.write_all(b"+")?;
            }
            return Ok(Some(expand_runs(&body)));
        }
    }

    /// Reads more bytes; false when `deadline` passed first.
    /// Polls the socket without sleeping for a short while: a reply usually comes within
    /// tens of microseconds, and sleeping until it does costs a wake-up on an idle CPU as long
    /// again (on this 2-CPU VM, ~25 us per round trip).
    fn spin_for_reply(&mut self) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let until = Instant::now() + SPIN;
        let mut tmp = [0u8; 8192];
        loop {
            // SAFETY: recv writes at most tmp.len() bytes into tmp, which we own.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    tmp.as_mut_ptr().cast(),
                    tmp.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the gdb stub closed the connection",
                    ));
                }
                n if n > 0 => {
                    self.rx.extend_from_slice(&tmp[..n as usize]);
                    return Ok(true);
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) {
                        return Err(e);
                    }
                }
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    fn fill(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        let wait = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(false),
            },
        };
        if self.spin_for_reply()? {
            return Ok(true);
        }
        // Only change the socket's timeout when it matters: polling sets the same one.
        let rounded = wait.map(|w| w.max(Duration::from_millis(1)));
        if rounded.map(|w| w.as_millis()) != self.read_timeout.map(|w| w.as_millis()) {
            self.stream.set_read_timeout(rounded)?;
            self.read_timeout = rounded;
        }
        let mut tmp = [0u8; 8192];
        match self.stream.read(&mut tmp) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the gdb stub closed the connection",
            )),
            Ok(n) => {
                self.rx.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// How long [`GdbRemote`] polls for a reply before it sleeps.
const SPIN: Duration = Duration::from_micros(150);

impl<A: GdbRegisters> RegisterIo for GdbRemote<A> {
    fn read_register(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let reply = self.request(&format!("p{n:x}"))?;
        if reply.is_empty() {
            return Err(unsupported(format!(
                "the stub does not answer `p` for register 0x{n:x}"
            )));
        }
        from_hex(&reply)
    }

    fn write_register(&mut self, n: usize, bytes: &[u8]) -> io::Result<()> {
        self.request_ok(&format!("P{n:x}={}", to_hex(bytes)))
    }
}

impl<A: GdbRegisters> Memory for GdbRemote<A> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let chunk = self.chunk;
        for (i, part) in buf.chunks_mut(chunk).enumerate() {
            let at = addr.wrapping_add((i * chunk) as u64);
            let reply = self
                .request(&format!("m{at:x},{:x}", part.len()))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("reading {} bytes at 0x{at:x}: {e}", part.len()),
                    )
                })?;
            let data = from_hex(&reply)?;
            if data.len() != part.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "reading 0x{at:x}: the stub sent {} of {} bytes",
                        data.len(),
                        part.len()
                    ),
                ));
            }
            part.copy_from_slice(&data);
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        let chunk = self.chunk;
        for (i, part) in data.chunks(chunk).enumerate() {
            let at = addr.wrapping_add((i * chunk) as u64);
            self.request_ok(&format!("M{at:x},{:x}:{}", part.len(), to_hex(part)))
                .map_err(|e| {
                    let hint = if e.to_string().contains(": E14") {
                        " (QEMU only writes pages writable now: not the text, not a page it has run since it was last made writable)"
                    } else {
                        ""
                    };
                    io::Error::new(e.kind(), format!("writing {} bytes at 0x{at:x}: {e}{hint}", part.len()))
                })?;
        }
        Ok(())
    }
}

impl<A: GdbRegisters> Registers<A::Regs> for GdbRemote<A> {
    /// The registers of thread `tid` (0 or less: the thread that stopped).
    fn get_regs(&mut self, tid: i32) -> io::Result<A::Regs> {
        self.select_thread(tid)?;
        let mut regs = match self.known {
            Some(k) => k,
            None => self.read_all()?,
        };
        if let Some(pc) = self.pending_pc {
            A::set_pc(&mut regs, pc);
        }
        if !self.on_demand {
            A::clear_on_demand(&mut regs);
        } else if !self.known_on_demand {
            let mut layout = self.layout;
            let read = A::read_on_demand(self, &mut layout, &mut regs);
            self.layout = layout;
            read?;
            self.known_on_demand = true;
        }
        self.known = Some(regs);
        Ok(regs)
    }

    /// Writes what differs from the stub's registers: those `G` carries with one `G` (as
    /// [`GdbRegisters::to_g`] says), the pc with the next resume, the on-demand registers
    /// with `P` when they are needed.
    fn set_regs(&mut self, tid: i32, regs: &A::Regs) -> io::Result<()> {
        let known = self.get_regs(tid)?;
        if let Some(bytes) = A::to_g(&known, regs) {
            self.request_ok(&format!("G{}", to_hex(&bytes)))?;
        }
        if A::pc(&known) != A::pc(regs) {
            self.pending_pc = Some(A::pc(regs));
        }
        if self.on_demand {
            let mut layout = self.layout;
            let written = A::write_on_demand(self, &mut layout, &known, regs);
            self.layout = layout;
            written?;
        }
        let mut now = A::as_stored(regs);
        if !self.on_demand {
            A::clear_on_demand(&mut now);
        }
        self.known = Some(now);
        Ok(())
    }
}

fn connect_retrying(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = addr.to_socket_addrs().and_then(|mut addrs| {
            let first = addrs
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            TcpStream::connect_timeout(&first, left)
        });
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("connecting to the gdb stub at {addr} (tried for {timeout:?}): {e}"),
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Data bytes per `m`/`M` packet for a stub's packet size: an `M` packet longer than the
/// stub's buffer is dropped without a reply (QEMU 7.2), so keep room for the header.
fn chunk_for(packet_size: usize) -> usize {
    (packet_size.saturating_sub(64) / 2).max(16)
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Undoes run-length encoding (`X*n`: `X` repeated `n - 29` more times).
fn expand_runs(body: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'*' && i + 1 < body.len() && !out.is_empty() {
            let last = *out.last().expect("checked");
            let n = usize::from(body[i + 1]).saturating_sub(29);
            out.extend(std::iter::repeat_n(last, n));
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Undoes the `}` escaping of binary replies (`qXfer`).
fn unescape_binary(data: &str) -> String {
    let mut out = Vec::with_capacity(data.len());
    let mut bytes = data.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'}' => out.extend(bytes.next().map(|n| n ^ 0x20)),
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_error(reply: &str) -> bool {
    reply.len() == 3 && reply.starts_with('E') && reply[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// An `Exx` reply as an error. QEMU's codes are errno values: `E14` EFAULT (an address it
/// cannot read or write), `E22` EINVAL.
fn stub_error(reply: &str, what: String) -> io::Error {
    let (kind, meaning) = match reply {
        "E14" => (io::ErrorKind::Other, " (bad address)"),
        "E22" => (io::ErrorKind::InvalidInput, " (invalid argument)"),
        _ => (io::ErrorKind::Other, ""),
    };
    io::Error::new(
        kind,
        format!("the gdb stub refused {what}: {reply}{meaning}"),
    )
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn unsupported(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, msg)
}

fn short(payload: &str) -> &str {
    let end = (0..=payload.len().min(40))
        .rev()
        .find(|&i| payload.is_char_boundary(i))
        .unwrap_or(0);
    &payload[..end]
}

fn hex_u64(s: &str) -> io::Result<u64> {
    u64::from_str_radix(s, 16).map_err(|_| protocol(format!("bad number `{s}` from the gdb stub")))
}

fn from_hex(s: &str) -> io::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(protocol(format!(
            "odd hex length from the gdb stub: `{}`",
            short(s)
        )));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| protocol(format!("bad hex from the gdb stub: `{}`", short(s))))
        })
        .collect()
}

fn to_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    data.iter()
        .fold(String::with_capacity(2 * data.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses `Sxx`, `Txx...thread:ID;...`, `Wxx[;...]`, `Xxx[;...]`.
fn parse_stop(reply: &str) -> io::Result<StopReply> {
    let code = || {
        reply
            .get(1..3)
            .and_then(|c| u8::from_str_radix(c, 16).ok())
            .ok_or_else(|| protocol(format!("bad stop reply `{}`", short(reply))))
    };
    match reply.as_bytes().first() {
        Some(b'S') => Ok(StopReply::Signal {
            signal: code()?,
            thread: None,
        }),
        Some(b'T') => {
            let signal = code()?;
            let thread = reply[3..]
                .split(';')
                .find_map(|f| f.strip_prefix("thread:"))
                .map(parse_thread)
                .transpose()?;
            Ok(StopReply::Signal { signal, thread })
        }
        Some(b'W') => Ok(StopReply::Exited(code()?)),
        Some(b'X') => Ok(StopReply::Killed(code()?)),
        _ => Err(protocol(format!(
            "expected a stop reply, got `{}`",
            short(reply)
        ))),
    }
}

/// `TID`, `-1`, or `pPID.TID` (multiprocess form): the thread id.
fn parse_thread(s: &str) -> io::Result<i64> {
    let tid = match s.strip_prefix('p') {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, t)| t),
        None => s,
    };
    if tid == "-1" {
        return Ok(-1);
    }
    i64::from_str_radix(tid, 16)
        .map_err(|_| protocol(format!("bad thread id `{s}` in a stop reply")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_replies() {
        assert_eq!(
            parse_stop("T05thread:01;").unwrap(),
            StopReply::Signal {
                signal: 5,
                thread: Some(1)
            }
        );
        assert_eq!(
            parse_stop("T02thread:p01.7a2a;").unwrap(),
            StopReply::Signal {
                signal: 2,
                thread: Some(0x7a2a)
            }
        );
        assert_eq!(
            parse_stop("T05swbreak:;thread:3611;").unwrap(),
            StopReply::Signal {
                signal: 5,
                thread: Some(0x3611)
            }
        );
        assert_eq!(
            parse_stop("S02").unwrap(),
            StopReply::Signal {
                signal: 2,
                thread: None
            }
        );
        assert_eq!(parse_stop("W03").unwrap(), StopReply::Exited(3));
        assert_eq!(parse_stop("W00;process:1a").unwrap(), StopReply::Exited(0));
        assert_eq!(parse_stop("X09").unwrap(), StopReply::Killed(9));
        assert!(parse_stop("OK").is_err());
        assert!(parse_stop("T5").is_err());
    }

    #[test]
    fn encodings() {
        assert_eq!(expand_runs(b"0* "), "0000");
        assert_eq!(unescape_binary("a}\x03b"), "a#b");
        assert_eq!(checksum(b"OK"), 0x9a);
        assert!(is_error("E14"));
        assert!(!is_error("e1"));
        assert!(!is_error("ab12"));
        assert_eq!(chunk_for(0x1000), 2016);
        assert_eq!(from_hex("00ff").unwrap(), vec![0, 255]);
        assert_eq!(to_hex(&[0, 255]), "00ff");
    }
}
