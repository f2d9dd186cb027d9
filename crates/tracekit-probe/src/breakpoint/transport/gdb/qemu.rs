//! The probe engine on a program under QEMU user mode, through QEMU's gdb remote stub, for any
//! architecture with a [`GdbRegisters`] mapping (LoongArch64 today).
//!
//! Same engine core as under ptrace ([`crate::breakpoint::engine`]); only the way to reach the
//! tracee differs. QEMU 7.2's stub refuses writes into read-only text (E14), and writing into
//! a text page it has already translated can crash it, so:
//! - the **breakpoint** at each probe point is a gdb `Z0` breakpoint: QEMU stops the program
//!   there with SIGTRAP exactly as the architecture's breakpoint would, and the text is never
//!   modified (nothing to restore at detach);
//! - the **slots** (out-of-line copies, each followed by its jump back or a breakpoint) and the
//!   return **trampoline** (a breakpoint) live in one page the engine maps into the program by
//!   injecting `mmap` (pc on an existing system call instruction of the program, a `Z0` right
//!   after it). The page is written once, before any of it runs, then made read-only and
//!   executable (W^X).
//!
//! Return probes replace the return address at the function's first instruction (LoongArch:
//! `ra`) with the trampoline's address; at detach, hijacked return addresses still pending are
//! put back (in the register, or in the stack slots the functions saved them to).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::remote::{GdbRemote, StopReply};
use super::{GdbError, GdbRegisters};
use crate::breakpoint::BreakpointError;
use crate::breakpoint::arch::{Arch, Handling, SlotReturn};
use crate::breakpoint::engine::{
    Engine, Installed, LivePoint, ProbeTable, ThreadState, Trap, place,
};
use crate::breakpoint::transport::inject::{InjectSyscall, inject_syscall, mmap_args};
use crate::breakpoint::transport::{Memory, Registers};
use crate::event::{ExitStatus, HitEvent, Outcome};
use crate::symbols::ResolvedProbe;

/// How the QEMU engine runs.
#[derive(Debug, Clone, Default)]
pub struct QemuOptions {
    /// Call `on_hit` for every hit.
    pub print: bool,
    /// Come back from slots through a breakpoint (post-handler) instead of a jump (LoongArch:
    /// `break 0` instead of `b`).
    pub slot_breakpoint: bool,
    /// How long to keep trying to connect (QEMU may still be starting). Default 10 s.
    pub connect_timeout: Option<Duration>,
}

const SIGTRAP: u8 = 5;
const SIGINT: u8 = 2;

/// Runs `probes` on the program of architecture `A` waiting under `qemu-ARCH-static -g PORT`
/// at `address` (`HOST:PORT`) until it exits, or until `stop` becomes true (then every probe
/// is removed, return addresses are put back, and the program continues unprobed). Probes
/// on binaries of another architecture are refused.
pub fn run<A: GdbRegisters>(
    probes: &[ResolvedProbe],
    address: &str,
    opts: &QemuOptions,
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&HitEvent),
) -> Result<Outcome, BreakpointError> {
    let table = ProbeTable::<A>::new(probes)?;
    let timeout = opts.connect_timeout.unwrap_or(Duration::from_secs(10));
    let mut remote =
        GdbRemote::<A>::connect(address, timeout).map_err(|error| GdbError::Remote {
            what: format!("connecting to the gdb stub at {address}"),
            error,
            qemu: A::QEMU,
        })?;
    let tid = match remote
        .stop_reason()
        .map_err(gdb::<A>("asking why the program stopped"))?
    {
        StopReply::Signal { thread, .. } => thread.unwrap_or(1) as i32,
        other => {
            return Err(GdbError::TargetGone {
                reply: format!("{other:?}"),
                qemu: A::QEMU,
            }
            .into());
        }
    };
    let ret = if opts.slot_breakpoint {
        SlotReturn::Breakpoint
    } else {
        SlotReturn::Jump
    };
    let mut session = Session {
        engine: Engine::new(table, opts.print, ret),
        inst: Installed::new(0),
        remote,
        tid,
        thread: ThreadState::default(),
        warnings: Vec::new(),
        syscall_at: 0,
    };
    let exit = match session
        .install(probes)
        .and_then(|()| session.run_loop(stop, on_hit))
    {
        Ok(exit) => exit,
        Err(e) => {
            // Leave the program running on without the stub and without our breakpoints
            // rather than stopped forever (best effort: the stub may be gone).
            let _ = session.detach();
            return Err(e);
        }
    };
    let mut report = session.engine.report();
    report.engine = "qemu-gdb".into();
    report.fold_sites(probes);
    let mut warnings = session.warnings;
    if let Some(p) = probes
        .iter()
        .find(|p| p.usdt.as_ref().is_some_and(|u| u.semaphore.is_some()))
    {
        warnings.push(format!(
            "{}: USDT semaphores are not incremented under QEMU; code the program guards with the probe's _ENABLED() test did not run",
            p.spec.text
        ));
    }
    Ok(Outcome {
        report,
        pid: tid,
        exit,
        lost_events: 0,
        warnings,
    })
}

/// The error for a failed step `what` of the transport.
fn gdb<A: GdbRegisters>(what: impl ToString) -> impl Fn(std::io::Error) -> BreakpointError {
    move |error| {
        GdbError::Remote {
            what: what.to_string(),
            error,
            qemu: A::QEMU,
        }
        .into()
    }
}

struct Session<A: GdbRegisters> {
    engine: Engine<A>,
    inst: Installed<A>,
    remote: GdbRemote<A>,
    tid: i32,
    thread: ThreadState,
    warnings: Vec<String>,
    /// A system call instruction of the program, for injected system calls.
    syscall_at: u64,
}

impl<A: GdbRegisters> Session<A> {
    /// Checks the program is the probes' binary, maps the slot page, writes slots and the
    /// trampoline, then sets a `Z0` on every probe point.
    fn install(&mut self, probes: &[ResolvedProbe]) -> Result<(), BreakpointError> {
        let offset = self
            .remote
            .section_offsets()
            .map_err(gdb::<A>("reading the section offsets"))?
            .unwrap_or(0);
        let points = self.engine.table.points.clone();
        let mut live = Vec::new();
        for (i, point) in points.iter().enumerate() {
            let probe = probes
                .iter()
                .find(|p| p.binary == point.binary && p.file_offset == point.file_offset)
                .expect("every point comes from a probe");
            let addr = probe.vaddr + offset;
            live.push((i, addr, self.read_point(&point.spec, probe, addr)?));
        }
        let needs_slots = live
            .iter()
            .any(|(_, _, insn)| A::classify(insn) == Handling::OutOfLine);
        let needs_tramp = points.iter().any(|p| !p.returns.is_empty());
        self.inst = Installed::new(points.len());
        let page = if needs_slots || needs_tramp {
            Some(self.map_page(&probes[0], offset)?)
        } else {
            None
        };
        let mut image = Vec::new();
        for (i, addr, insn) in live {
            let (live, ret) = self.place_point(&points[i].spec, addr, insn, page, &mut image)?;
            self.inst.add(i, live, ret);
        }
        if let Some(page) = page {
            self.seal_page(page, image, needs_tramp)?;
        }
        for p in self.inst.points.iter().flatten() {
            self.remote
                .insert_breakpoint(p.addr)
                .map_err(gdb::<A>("setting a breakpoint"))?;
        }
        Ok(())
    }

    /// The instruction at probe `spec`'s address `addr` in the running program, checked to be
    /// the bytes of the probe's binary there (the program under the stub may be another one).
    fn read_point(
        &mut self,
        spec: &str,
        probe: &ResolvedProbe,
        addr: u64,
    ) -> Result<A::Insn, BreakpointError> {
        let off = (probe.vaddr - probe.symbol_vaddr) as usize;
        // As long as the file's instruction there: the program must have the same bytes.
        let len = (probe.code.get(off..))
            .and_then(|code| A::decode(code, addr))
            .map_or(A::MAX_INSN_LEN, |insn| A::len(&insn));
        let mut running = vec![0u8; len];
        self.remote
            .read(addr, &mut running)
            .map_err(gdb::<A>("reading the probed instruction"))?;
        if probe.code.get(off..off + len) != Some(&running[..]) {
            return Err(BreakpointError::NotTheProgram {
                spec: spec.to_owned(),
                binary: probe.binary.clone(),
                addr,
            });
        }
        let insn = A::decode(&running, addr).ok_or_else(|| BreakpointError::Undecodable {
            spec: spec.to_owned(),
            addr,
        })?;
        if A::needs_on_demand(&insn) {
            self.remote.set_on_demand(true);
        }
        Ok(insn)
    }

    /// Classifies the point at `addr` and, for an out-of-line one, appends its slot to `image`
    /// (the slot page's contents, `page` its address); returns the placed point and how its
    /// slot returns.
    fn place_point(
        &mut self,
        spec: &str,
        addr: u64,
        insn: A::Insn,
        page: Option<u64>,
        image: &mut Vec<u8>,
    ) -> Result<(LivePoint<A>, SlotReturn), BreakpointError> {
        let handling = place::handling::<A>(spec, &insn, false)?;
        let (mut slot, mut ret, mut copy_len) = (None, SlotReturn::Jump, 0);
        if handling == Handling::OutOfLine {
            let page = page.expect("mapped when a slot is needed");
            let at = page + image.len() as u64;
            ret = self.slot_return_for(at, addr);
            if ret != self.engine.slot_return {
                self.warnings.push(format!(
                    "{spec}: the slot page (0x{page:x}) is out of the jump back's reach; its slot returns through a second stop"
                ));
            }
            let slot_image = place::slot_image::<A>(spec, &insn, at, ret)?;
            image.extend_from_slice(&slot_image.bytes);
            image.resize(image.len().next_multiple_of(A::SLOT_SIZE as usize), 0);
            (slot, copy_len) = (Some(at), slot_image.copy_len);
        }
        let live = LivePoint {
            addr,
            // A `Z0` breakpoint replaces no bytes.
            orig: vec![],
            insn,
            handling,
            slot,
            slot_copy_len: copy_len,
        };
        Ok((live, ret))
    }

    /// Writes the slots (and the trampoline after them when `needs_tramp`) into the page at
    /// `page`, then makes it read-only and executable.
    fn seal_page(
        &mut self,
        page: u64,
        mut image: Vec<u8>,
        needs_tramp: bool,
    ) -> Result<(), BreakpointError> {
        if needs_tramp {
            self.inst.trampoline = Some(page + image.len() as u64);
            image.extend_from_slice(A::BREAKPOINT);
        }
        // One write, before any of it has run: QEMU never sees this page change after it
        // translated it.
        self.remote
            .write(page, &image)
            .map_err(gdb::<A>("writing the slots"))?;
        // W^X before it runs, as the kernel's uprobe XOL area: the program cannot overwrite
        // its slots by accident, and the stub can never write a page QEMU translated.
        let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        let args = [page, A::PAGE_SIZE, prot, 0, 0, 0];
        self.inject_syscall(A::NR_MPROTECT, args, "mprotect")?;
        self.inst.areas.push((page, A::PAGE_SIZE));
        Ok(())
    }

    /// A jump back when the slot is within its reach (one stop per hit), else a breakpoint.
    fn slot_return_for(&self, slot: u64, original: u64) -> SlotReturn {
        let wanted = self.engine.slot_return;
        let reach = slot.abs_diff(original) < A::SLOT_REACH;
        if wanted == SlotReturn::Jump && reach {
            SlotReturn::Jump
        } else {
            SlotReturn::Breakpoint
        }
    }

    /// Puts back the hijacked return addresses ([`Engine::restore_register_returns`]), writing
    /// the registers back if `ra` was one of them.
    fn restore_returns(&mut self) -> std::io::Result<usize> {
        let mut regs = self.remote.get_regs(self.tid)?;
        let before = regs;
        let restored = Engine::restore_register_returns(
            &self.inst,
            &self.thread,
            &mut regs,
            &mut self.remote,
        )?;
        if regs != before {
            self.remote.set_regs(self.tid, &regs)?;
        }
        Ok(restored)
    }

    /// Maps one RW page into the program by running `mmap` from one of its own system call
    /// instructions (found in `first`'s binary), near `first`'s code (so slots can jump
    /// straight back); `offset` is where the stub says the program is loaded.
    fn map_page(&mut self, first: &ResolvedProbe, offset: u64) -> Result<u64, BreakpointError> {
        self.syscall_at = find_syscall::<A>(&first.binary).ok_or_else(|| GdbError::Remote {
            what: format!(
                "finding a system call instruction in {} to map the slot page with",
                first.binary.display()
            ),
            error: std::io::Error::other("the program has none"),
            qemu: A::QEMU,
        })?;
        // Half a slot's reach above the probed code (LoongArch: 64 MiB of a `b`'s ±128 MiB):
        // clear of the program's data and heap, and within reach, so slots jump straight back
        // (QEMU honours a free hint).
        let page = A::PAGE_SIZE;
        let near = first.vaddr + offset;
        let hint = (near + (A::SLOT_REACH / 2).next_multiple_of(page)) & !(page - 1);
        let args = mmap_args(hint, page, libc::PROT_READ | libc::PROT_WRITE, 0);
        let page = self.inject_syscall(A::NR_MMAP, args, "mmap")?;
        Ok(page as u64)
    }

    /// Runs system call `nr` in the program from one of its own system call instructions, with
    /// every register restored afterwards; returns the result (errors as `Err`).
    fn inject_syscall(
        &mut self,
        nr: u64,
        args: [u64; 6],
        name: &str,
    ) -> Result<i64, BreakpointError> {
        let failed = gdb::<A>(format!("running {name} in the program"));
        let result = inject_syscall::<A, _>(&mut self.remote, self.tid, self.syscall_at, nr, args)
            .map_err(&failed)?;
        if (-4095..0).contains(&result) {
            return Err(failed(std::io::Error::from_raw_os_error(-result as i32)));
        }
        Ok(result)
    }

    fn run_loop(
        &mut self,
        stop: &AtomicBool,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<Option<ExitStatus>, BreakpointError> {
        let mut signal = None;
        loop {
            let reply = self
                .remote
                .resume_until(signal.take(), stop)
                .map_err(gdb::<A>("running the program"))?;
            match reply {
                StopReply::Exited(code) => return Ok(Some(ExitStatus::Code(code.into()))),
                StopReply::Killed(sig) => return Ok(Some(ExitStatus::Signal(sig.into()))),
                StopReply::Signal { signal: SIGINT, .. } if stop.load(Ordering::Relaxed) => {
                    self.detach()?;
                    return Ok(None);
                }
                StopReply::Signal {
                    signal: SIGTRAP, ..
                } => {
                    let mut regs = self
                        .remote
                        .get_regs(self.tid)
                        .map_err(gdb::<A>("reading registers"))?;
                    let trap = self.engine.on_trap(
                        &self.inst,
                        &mut self.thread,
                        self.tid,
                        &mut regs,
                        &mut self.remote,
                        on_hit,
                    )?;
                    match trap {
                        Trap::Handled => self
                            .remote
                            .set_regs(self.tid, &regs)
                            .map_err(gdb::<A>("writing registers"))?,
                        Trap::Foreign => signal = Some(SIGTRAP),
                    }
                    if stop.load(Ordering::Relaxed) {
                        self.detach()?;
                        return Ok(None);
                    }
                }
                // The program's own signals go back to it, as without the engine.
                StopReply::Signal { signal: s, .. } => signal = Some(s),
            }
        }
    }

    /// Removes every breakpoint, moves the thread out of a slot or the trampoline, puts back
    /// pending return addresses, and lets the program go.
    fn detach(&mut self) -> Result<(), BreakpointError> {
        // The stub removes its breakpoints at `D` too; removing them first keeps the program
        // clean even if the detach itself fails.
        for p in self.inst.points.iter().flatten() {
            self.remote
                .remove_breakpoint(p.addr)
                .map_err(gdb::<A>("removing a breakpoint"))?;
        }
        Engine::evacuate(&self.inst, &mut self.thread, self.tid, &mut self.remote)
            .map_err(gdb::<A>("moving the thread out of a slot"))?;
        let restored = self
            .restore_returns()
            .map_err(gdb::<A>("restoring return addresses"))?;
        if restored < self.thread.returns.len() {
            self.warnings.push(format!(
                "{} hijacked return address(es) not found to restore; the slot page stays mapped so those returns still land on the trampoline",
                self.thread.returns.len() - restored
            ));
        } else if let Some(&(page, len)) = self.inst.areas.first() {
            // Nothing can reach the page any more: take it out, so the program is left as it
            // was found.
            self.inject_syscall(A::NR_MUNMAP, [page, len, 0, 0, 0, 0], "munmap")?;
            self.inst.areas.clear();
        }
        self.remote.detach().map_err(gdb::<A>("detaching"))?;
        Ok(())
    }
}

/// The address of a system call instruction in an executable segment of `binary` (static
/// programs always have one: how else would they exit).
fn find_syscall<A: Arch>(binary: &std::path::Path) -> Option<u64> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(binary).ok()?;
    let file = object::File::parse(&*data).ok()?;
    file.segments()
        .filter(|s| matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
        .find_map(|s| {
            let bytes = s.data().ok()?;
            // Only at instruction boundaries the architecture allows.
            let at = (0..bytes.len())
                .step_by(A::INSN_ALIGN)
                .find(|&i| bytes[i..].starts_with(A::SYSCALL))?;
            Some(s.address() + at as u64)
        })
}

impl<A: GdbRegisters> InjectSyscall<A> for GdbRemote<A> {
    type Error = std::io::Error;

    fn read_regs(&mut self, tid: i32) -> std::io::Result<A::Regs> {
        self.get_regs(tid)
    }

    fn write_regs(&mut self, tid: i32, regs: &A::Regs) -> std::io::Result<()> {
        self.set_regs(tid, regs)
    }

    /// Stops on a `Z0` right after the instruction: QEMU's single step over a system call runs
    /// one instruction too many.
    fn run_syscall(&mut self, tid: i32, at: u64) -> std::io::Result<()> {
        let after_syscall = at + A::SYSCALL.len() as u64;
        self.insert_breakpoint(after_syscall)?;
        self.resume(None)?;
        self.remove_breakpoint(after_syscall)?;
        let pc = A::pc(&self.get_regs(tid)?);
        if pc != after_syscall {
            return Err(std::io::Error::other(format!(
                "the system call instruction at 0x{at:x} ended at 0x{pc:x}"
            )));
        }
        Ok(())
    }
}
