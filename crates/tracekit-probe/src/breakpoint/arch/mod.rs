//! The one architecture trait of the probe engine.
//!
//! Everything that depends on the instruction set lives behind [`Arch`]: decoding, deciding
//! how a displaced instruction is handled, simulating it on a register set, writing its copy
//! into a slot, the breakpoint and system call encodings, the system call numbers, how far a
//! slot may be from its original, and the page size. The engine core and the transports never
//! look at an opcode or a register number. [`x86_64`] (iced-x86) and [`loongarch64`]
//! implement it.
//!
//! A third architecture is one more module here with:
//! - a unit type implementing [`Arch`] (its register set as `Arch::Regs`, its decoded
//!   instruction as `Arch::Insn`, and every constant and function of the trait);
//! - its register mapping for each transport that is to reach it: for the gdb transport an
//!   implementation of [`GdbRegisters`](super::transport::gdb::GdbRegisters) (the `g`/`G`
//!   layout and the pc's number; LoongArch64's is `loongarch64/gdb.rs`); for the ptrace
//!   transport, when it is the host's architecture, `PtraceTarget: Registers<Regs>` (its
//!   `PTRACE_GETREGS` layout, in `transport/ptrace/target.rs`) and its line in [`Host`].

pub mod loongarch64;
pub mod x86_64;

/// The architecture tracekit itself runs on: the one the ptrace transport reaches (a tracer
/// traces its own instruction set). Another host is one more `cfg` line here, once its
/// architecture module and `PtraceTarget` register mapping exist.
#[cfg(target_arch = "x86_64")]
pub type Host = x86_64::X86_64;

use std::fmt::Debug;
use std::io;

use super::transport::Memory;
use crate::symbols::Machine;

/// How a displaced instruction is executed after its breakpoint fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handling {
    /// Its effect is computed on the registers (and memory) by the tracer: one stop per hit.
    Simulate,
    /// A copy runs from a slot in the tracee, re-encoded for the slot's address.
    OutOfLine,
    /// It cannot be handled; the reason says why.
    Refuse(String),
}

/// How a slot hands control back after the copied instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotReturn {
    /// A jump to the instruction after the original (boosted kprobe): no second stop.
    Jump,
    /// A breakpoint: the engine's post-handler runs, then the thread resumes after the original.
    Breakpoint,
}

/// Where a function's return address is at its first instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnSlot {
    /// In memory at this address (x86-64: `[rsp]`).
    Memory(u64),
    /// In the link register (LoongArch: `ra`).
    Register,
}

/// An instruction set, as the probe engine needs it. Implemented by a unit type naming the
/// architecture (`Copy + Debug`, so that the engine's and transports' types generic over it
/// derive `Clone` and `Debug`).
pub trait Arch: Copy + Debug + 'static {
    /// A thread's general registers.
    type Regs: Copy + Debug;
    /// One decoded instruction (knows its address and length).
    type Insn: Clone + Debug;

    /// The ELF machine of the binaries it probes.
    const MACHINE: Machine;
    /// The breakpoint instruction's bytes.
    const BREAKPOINT: &'static [u8];
    /// The system call instruction's bytes (used to inject `mmap`/`munmap`).
    const SYSCALL: &'static [u8];
    /// Longest instruction, in bytes.
    const MAX_INSN_LEN: usize;
    /// Instructions start at multiples of this many bytes.
    const INSN_ALIGN: usize;
    /// The page size of the architecture's Linux (slot areas are whole pages).
    const PAGE_SIZE: u64;
    /// Bytes reserved per slot (the copy, its way back, alignment).
    const SLOT_SIZE: u64;
    /// How far (either way) a slot may be from the instruction it copies and still jump back
    /// to it directly, its PC-relative forms re-encoded: the reach of the architecture's
    /// relative jump, with a margin. Slots farther away return through a breakpoint, or (when
    /// the copy itself needs the reach) cannot be used.
    const SLOT_REACH: u64;
    /// The `mmap` system call number (transports inject it to map the slot area).
    const NR_MMAP: u64;
    /// The `mprotect` system call number.
    const NR_MPROTECT: u64;
    /// The `munmap` system call number (the slot area is unmapped at detach).
    const NR_MUNMAP: u64;

    /// Decodes the instruction at the start of `code`, which sits at `addr`.
    fn decode(code: &[u8], addr: u64) -> Option<Self::Insn>;
    /// Its length in bytes.
    fn len(insn: &Self::Insn) -> usize;
    /// Human-readable text, e.g. `mov rax,[rip+2EE5h]`.
    fn text(insn: &Self::Insn) -> String;
    /// Simulate, execute out of line, or refuse.
    fn classify(insn: &Self::Insn) -> Handling;
    /// Whether [`Arch::simulate`] handles it (a subset of what is not refused).
    fn can_simulate(insn: &Self::Insn) -> bool;
    /// Whether it must be simulated even when out-of-line execution is preferred (branches,
    /// calls, returns: their copy would go the wrong way).
    fn must_simulate(insn: &Self::Insn) -> bool;
    /// Applies the instruction's effect to `regs` (and `mem`), leaving the pc after it or at
    /// its branch target.
    fn simulate(insn: &Self::Insn, regs: &mut Self::Regs, mem: &mut dyn Memory) -> io::Result<()>;
    /// The slot's bytes: the instruction re-encoded to run at `slot`, then the way back to
    /// the instruction after the original.
    fn prepare_slot(insn: &Self::Insn, slot: u64, ret: SlotReturn) -> Result<Vec<u8>, String>;

    /// Program counter.
    fn pc(regs: &Self::Regs) -> u64;
    /// Sets the program counter.
    fn set_pc(regs: &mut Self::Regs, pc: u64);
    /// Stack pointer.
    fn sp(regs: &Self::Regs) -> u64;
    /// The breakpoint's address, given the pc reported at its trap.
    fn breakpoint_address(trap_pc: u64) -> u64;
    /// The first six integer arguments at a function's entry.
    fn args(regs: &Self::Regs) -> [u64; 6];
    /// The integer return value at a function's return.
    fn return_value(regs: &Self::Regs) -> u64;
    /// Where the return address is at a function's first instruction.
    fn return_slot(regs: &Self::Regs) -> ReturnSlot;
    /// The return-address register (for [`ReturnSlot::Register`] architectures).
    fn return_register(regs: &Self::Regs) -> u64;
    /// Sets the return-address register (for [`ReturnSlot::Register`] architectures).
    fn set_return_register(regs: &mut Self::Regs, value: u64);
    /// A stack address naming the frame of a function at its first instruction; the same
    /// value comes back from [`Arch::frame_at_return`] when that call returns. Frames of
    /// deeper calls are below it (how abandoned frames are recognised after a longjmp).
    fn frame_at_entry(regs: &Self::Regs) -> u64;
    /// The frame address of the call that just returned (at the return trampoline).
    fn frame_at_return(regs: &Self::Regs) -> u64;
    /// Registers that run system call `nr` with `args` from a syscall instruction at `at`;
    /// `saved` supplies everything else (and is restored afterwards).
    fn syscall_regs(saved: &Self::Regs, at: u64, nr: u64, args: [u64; 6]) -> Self::Regs;
    /// The result of a system call, after it ran.
    fn syscall_result(regs: &Self::Regs) -> i64;
    /// A register a USDT argument names (x86-64 only: the notes' operands are AT&T x86-64;
    /// `Rip` is the probe site's address, as the kernel's uprobes show it).
    fn usdt_register(regs: &Self::Regs, reg: crate::usdt::Reg) -> Option<u64> {
        let _ = (regs, reg);
        None
    }
}

/// Where `addr` sits among the instructions of a function that starts at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boundary {
    /// `addr` starts an instruction.
    Exact,
    /// `addr` is inside the instruction `text` at `start`; the next one is at `next`.
    Inside {
        /// The instruction's text.
        text: String,
        /// Its start.
        start: u64,
        /// The next instruction's start.
        next: u64,
    },
    /// Decoding stopped (bad bytes, or the code given ends) before reaching `addr`.
    Unknown,
}

/// Decodes a function from its first byte up to `addr` to tell whether `addr` is an
/// instruction boundary (a probe in the middle of an instruction corrupts it).
pub fn boundary<A: Arch>(code: &[u8], start: u64, addr: u64) -> Boundary {
    let mut pc = start;
    while pc < addr {
        let off = (pc - start) as usize;
        let Some(insn) = code.get(off..).and_then(|c| A::decode(c, pc)) else {
            return Boundary::Unknown;
        };
        let next = pc + A::len(&insn) as u64;
        if next > addr {
            return Boundary::Inside {
                text: A::text(&insn),
                start: pc,
                next,
            };
        }
        pc = next;
    }
    Boundary::Exact
}
