//! The probe engine on a LoongArch64 program under QEMU, through QEMU's gdb remote stub.
//!
//! Same engine core as on x86-64 ([`crate::breakpoint::engine`]); only the way to reach the tracee
//! differs. QEMU 7.2's stub refuses writes into read-only text (E14), and writing into a text
//! page it has already translated can crash it, so:
//! - the **breakpoint** at each probe point is a gdb `Z0` breakpoint: QEMU stops the program
//!   there with SIGTRAP exactly as a `break 0` would, and the text is never modified (nothing
//!   to restore at detach);
//! - the **slots** (out-of-line copies, each followed by its `b` back or `break 0`) and the
//!   return **trampoline** (`break 0`) live in one page the engine maps into the program by
//!   injecting `mmap` (pc on an existing `syscall 0` of the program, a `Z0` right after it). The page
//!   is written once, before any of it runs, then made read-only and executable (W^X).
//!
//! Return probes replace `ra` at the function's first instruction with the trampoline's
//! address; at detach, hijacked return addresses still pending are put back (in `ra`, or in
//! the stack slots the functions saved them to).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::GdbError;
use super::remote::{GdbRemote, StopReply};
use crate::breakpoint::BreakpointError;
use crate::breakpoint::arch::loongarch64::{Class, LoongArch64, SYSCALL_WORD};
use crate::breakpoint::arch::{Arch, Handling, SlotReturn};
use crate::breakpoint::engine::{
    Engine, Installed, LivePoint, ProbeTable, ThreadState, Trap, place,
};
use crate::breakpoint::transport::{Memory, Registers};
use crate::event::{ExitStatus, HitEvent, Outcome};
use crate::symbols::ResolvedProbe;

type A = LoongArch64;

/// How the QEMU engine runs.
#[derive(Debug, Clone, Default)]
pub struct QemuOptions {
    /// Call `on_hit` for every hit.
    pub print: bool,
    /// Come back from slots through a `break 0` (post-handler) instead of a `b`.
    pub slot_breakpoint: bool,
    /// How long to keep trying to connect (QEMU may still be starting). Default 10 s.
    pub connect_timeout: Option<Duration>,
}

const SIGTRAP: u8 = 5;
const SIGINT: u8 = 2;
const PAGE: u64 = 0x4000;

/// Runs `probes` on the LoongArch64 program waiting under `qemu-loongarch64-static -g PORT`
/// at `address` (`HOST:PORT`) until it exits, or until `stop` becomes true (then every probe
/// is removed, return addresses are put back, and the program continues unprobed).
pub fn run(
    probes: &[ResolvedProbe],
    address: &str,
    opts: &QemuOptions,
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&HitEvent),
) -> Result<Outcome, BreakpointError> {
    let table = ProbeTable::<A>::new(probes)?;
    let timeout = opts.connect_timeout.unwrap_or(Duration::from_secs(10));
    let mut remote = GdbRemote::connect(address, timeout).map_err(|error| GdbError::Remote {
        what: format!("connecting to the gdb stub at {address}"),
        error,
    })?;
    let tid = match remote
        .stop_reason()
        .map_err(gdb("asking why the program stopped"))?
    {
        StopReply::Signal { thread, .. } => thread.unwrap_or(1) as i32,
        other => return Err(GdbError::TargetGone(format!("{other:?}")).into()),
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

fn gdb(what: &'static str) -> impl Fn(std::io::Error) -> BreakpointError {
    move |error| {
        GdbError::Remote {
            what: what.to_string(),
            error,
        }
        .into()
    }
}

struct Session {
    engine: Engine<A>,
    inst: Installed<A>,
    remote: GdbRemote,
    tid: i32,
    thread: ThreadState,
    warnings: Vec<String>,
    /// A `syscall 0` of the program, for injected system calls.
    syscall_at: u64,
}

impl Session {
    /// Checks the program is the probes' binary, maps the slot page, writes slots and the
    /// trampoline, then sets a `Z0` on every probe point.
    fn install(&mut self, probes: &[ResolvedProbe]) -> Result<(), BreakpointError> {
        let offset = self
            .remote
            .section_offsets()
            .map_err(gdb("reading the section offsets"))?
            .unwrap_or(0);
        let points = self.engine.table.points.clone();
        let mut live = Vec::new();
        for (i, point) in points.iter().enumerate() {
            let probe = probes
                .iter()
                .find(|p| p.binary == point.binary && p.file_offset == point.file_offset)
                .expect("every point comes from a probe");
            let addr = probe.vaddr + offset;
            let off = (probe.vaddr - probe.symbol_vaddr) as usize;
            let mut running = [0u8; 4];
            self.remote
                .read(addr, &mut running)
                .map_err(gdb("reading the probed instruction"))?;
            if probe.code.get(off..off + 4) != Some(&running[..]) {
                return Err(BreakpointError::NotTheProgram {
                    spec: point.spec.clone(),
                    binary: point.binary.clone(),
                    addr,
                });
            }
            let insn = A::decode(&running, addr).expect("4 aligned bytes decode");
            if matches!(insn.class(), Class::FpBranch) {
                self.remote.set_fcc_needed(true);
            }
            live.push((i, insn));
        }
        let needs_slots = live
            .iter()
            .any(|(_, insn)| A::classify(insn) == Handling::OutOfLine);
        let needs_tramp = points.iter().any(|p| !p.returns.is_empty());
        self.inst = Installed::new(points.len());
        let page = if needs_slots || needs_tramp {
            self.syscall_at = find_syscall(&probes[0].binary).ok_or_else(|| GdbError::Remote {
                what: format!(
                    "finding a `syscall 0` instruction in {} to map the slot page with",
                    probes[0].binary.display()
                ),
                error: std::io::Error::other("the program has none"),
            })?;
            let near = probes.first().map_or(0, |p| p.vaddr + offset);
            Some(self.map_page(near)?)
        } else {
            None
        };
        let mut image = Vec::new();
        for (i, insn) in live {
            let handling = place::handling::<A>(&points[i].spec, &insn, false)?;
            let (mut slot, mut ret) = (None, SlotReturn::Jump);
            let mut copy_len = 0;
            if handling == Handling::OutOfLine {
                let page = page.expect("mapped when a slot is needed");
                let at = page + image.len() as u64;
                ret = self.slot_return_for(at, insn.addr);
                if ret != self.engine.slot_return {
                    self.warnings.push(format!(
                        "{}: the slot page (0x{page:x}) is out of a `b`'s reach; its slot returns through a second stop",
                        points[i].spec
                    ));
                }
                let slot_image = place::slot_image::<A>(&points[i].spec, &insn, at, ret)?;
                image.extend_from_slice(&slot_image.bytes);
                copy_len = slot_image.copy_len;
                image.resize(image.len().next_multiple_of(A::SLOT_SIZE as usize), 0);
                slot = Some(at);
            }
            let live = LivePoint {
                addr: insn.addr,
                // A `Z0` breakpoint replaces no bytes.
                orig: vec![],
                insn,
                handling,
                slot,
                slot_copy_len: copy_len,
            };
            self.inst.add(i, live, ret);
        }
        if let Some(page) = page {
            if needs_tramp {
                self.inst.trampoline = Some(page + image.len() as u64);
                image.extend_from_slice(A::BREAKPOINT);
            }
            // One write, before any of it has run: QEMU never sees this page change after it
            // translated it.
            self.remote
                .write(page, &image)
                .map_err(gdb("writing the slots"))?;
            // W^X before it runs, as the kernel's uprobe XOL area: the program cannot overwrite
            // its slots by accident, and the stub can never write a page QEMU translated.
            let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
            self.inject_syscall(A::NR_MPROTECT, [page, PAGE, prot, 0, 0, 0], "mprotect")?;
            self.inst.areas.push((page, PAGE));
        }
        for p in self.inst.points.iter().flatten() {
            self.remote
                .insert_breakpoint(p.addr)
                .map_err(gdb("setting a breakpoint"))?;
        }
        Ok(())
    }

    /// `b` back when the slot is within its reach (one stop per hit), else `break 0`.
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

    /// Maps one RWX page into the program by running `mmap` from one of its own `syscall 0`
    /// instructions, asking for an address near `near` (so slots can jump back with `b`).
    fn map_page(&mut self, near: u64) -> Result<u64, BreakpointError> {
        // 64 MiB above the probed code: clear of the program's data and heap, and well within
        // a `b`'s ±128 MiB, so slots jump straight back (QEMU honours a free hint).
        let hint = (near + 0x400_0000) & !(PAGE - 1);
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let page =
            self.inject_syscall(A::NR_MMAP, [hint, PAGE, prot, flags, u64::MAX, 0], "mmap")?;
        Ok(page as u64)
    }

    /// Runs system call `nr` in the program from one of its own `syscall 0` instructions,
    /// with every register restored afterwards; returns the result (errors as `Err`).
    fn inject_syscall(
        &mut self,
        nr: u64,
        args: [u64; 6],
        name: &str,
    ) -> Result<i64, BreakpointError> {
        let syscall_at = self.syscall_at;
        let failed = |error| -> BreakpointError {
            GdbError::Remote {
                what: format!("running {name} in the program"),
                error,
            }
            .into()
        };
        let saved = self.remote.get_regs(self.tid).map_err(failed)?;
        let regs = A::syscall_regs(&saved, syscall_at, nr, args);
        self.remote.set_regs(self.tid, &regs).map_err(failed)?;
        // QEMU's single step over `syscall` runs one instruction too many: stop on a `Z0`
        // right after it instead.
        let after_syscall = syscall_at + 4;
        self.remote
            .insert_breakpoint(after_syscall)
            .map_err(failed)?;
        self.remote.resume(None).map_err(failed)?;
        self.remote
            .remove_breakpoint(after_syscall)
            .map_err(failed)?;
        let after = self.remote.get_regs(self.tid).map_err(failed)?;
        self.remote.set_regs(self.tid, &saved).map_err(failed)?;
        if A::pc(&after) != after_syscall {
            return Err(failed(std::io::Error::other(format!(
                "the `syscall 0` at 0x{syscall_at:x} ended at 0x{:x}",
                A::pc(&after)
            ))));
        }
        let result = A::syscall_result(&after);
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
                .map_err(gdb("running the program"))?;
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
                        .map_err(gdb("reading registers"))?;
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
                            .map_err(gdb("writing registers"))?,
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
                .map_err(gdb("removing a breakpoint"))?;
        }
        Engine::evacuate(&self.inst, &mut self.thread, self.tid, &mut self.remote)
            .map_err(gdb("moving the thread out of a slot"))?;
        let restored = self
            .restore_returns()
            .map_err(gdb("restoring return addresses"))?;
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
        self.remote.detach().map_err(gdb("detaching"))?;
        Ok(())
    }
}

/// The address of a `syscall 0` in an executable segment of `binary` (static programs always
/// have one: how else would they exit).
fn find_syscall(binary: &std::path::Path) -> Option<u64> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(binary).ok()?;
    let file = object::File::parse(&*data).ok()?;
    file.segments()
        .filter(|s| matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
        .find_map(|s| {
            let bytes = s.data().ok()?;
            let at = bytes
                .chunks_exact(4)
                .position(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")) == SYSCALL_WORD)?;
            Some(s.address() + 4 * at as u64)
        })
}
