//! LoongArch64 behind the [`Arch`] trait: the kprobe instruction backend, done right.
//!
//! The reference is Linux's LoongArch kprobes (2022): `break 0` is the breakpoint; branches and
//! PC-relative instructions are *simulated* because their result depends on where they run;
//! everything else is copied to a slot followed by a return (a second `break`, LoongArch having
//! no hardware single step, or a `b` back when the slot is near) and run *out of line*. LL/SC
//! is refused: the trap between `ll` and `sc` clears the link, so the `sc` would fail forever.
//!
//! Differences from the kernel's version, each proven against QEMU by the differential suite
//! (`tests/loongarch_differential.rs`):
//! - immediates are sign-extended at their full width before scaling, in 64 bits (the kernel's
//!   `pcaddu18i` shifted a 20-bit value left by 18 in a 32-bit unsigned int, so every negative
//!   offset came out wrong);
//! - `bceqz`/`bcnez` are simulated from the FP condition flags the register set carries,
//!   instead of being refused;
//! - `jirl` reads `rj` before writing `rd` (they may be the same register), and writes to
//!   `$zero` are discarded everywhere.
//!
//! Ordinary instructions are named from a table generated off LLVM's disassembler
//! ([`opcodes`]); a word that matches nothing is refused as unknown rather
//! than run blind.

use std::fmt;
use std::io;

pub mod gdb;
#[doc(hidden)]
pub mod opcodes;

use super::{Arch, Handling, ReturnSlot, SlotReturn};
use crate::breakpoint::transport::Memory;
use crate::symbols::Machine;
use opcodes::OPCODES;

/// A LoongArch64 thread's registers as the engine needs them: the 32 general registers, the
/// pc, and the eight FP condition flags (read by `bceqz`/`bcnez`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// `$r0`..`$r31` (`$r0` reads as zero; `$r1` is `ra`, `$r3` is `sp`, `$r4`..`$r11` are
    /// `a0`..`a7`).
    pub gpr: [u64; 32],
    /// Program counter.
    pub pc: u64,
    /// `fcc0`..`fcc7`, bit `i` = `fcc{i}`.
    pub fcc: u8,
}

impl Regs {
    /// Writes `value` to `$r{rd}`; writes to `$zero` are discarded, as in hardware.
    pub fn set(&mut self, rd: u32, value: u64) {
        if rd != 0 {
            self.gpr[rd as usize] = value;
        }
    }

    /// Reads `$r{r}` (`$zero` is always 0, whatever the array holds).
    pub fn get(&self, r: u32) -> u64 {
        if r == 0 { 0 } else { self.gpr[r as usize] }
    }
}

/// The LoongArch64 architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoongArch64;

/// What an instruction does, as far as the probe engine must tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `beqz rj, offs21`
    Beqz,
    /// `bnez rj, offs21`
    Bnez,
    /// `bceqz cj, offs21` (branch if FP condition flag `cj` is 0)
    Bceqz,
    /// `bcnez cj, offs21`
    Bcnez,
    /// `jirl rd, rj, offs16`: `rd = pc + 4; pc = rj + offs`
    Jirl,
    /// `b offs26`
    B,
    /// `bl offs26`: `ra = pc + 4`
    Bl,
    /// `beq rj, rd, offs16`
    Beq,
    /// `bne rj, rd, offs16`
    Bne,
    /// `blt rj, rd, offs16` (signed)
    Blt,
    /// `bge rj, rd, offs16` (signed)
    Bge,
    /// `bltu rj, rd, offs16`
    Bltu,
    /// `bgeu rj, rd, offs16`
    Bgeu,
    /// `pcaddi rd, si20`: `rd = pc + (si20 << 2)`
    Pcaddi,
    /// `pcalau12i rd, si20`: `rd = (pc + (si20 << 12)) & !0xfff`
    Pcalau12i,
    /// `pcaddu12i rd, si20`: `rd = pc + (si20 << 12)`
    Pcaddu12i,
    /// `pcaddu18i rd, si20`: `rd = pc + (si20 << 18)`
    Pcaddu18i,
    /// `jiscr0`/`jiscr1` (LBT: jump relative to a binary-translation scratch register).
    Jiscr(&'static str),
    /// Load-linked / store-conditional (`ll.w`, `sc.d`, `llacq.w`, `sc.q`, ...).
    LlSc(&'static str),
    /// Single-instruction atomics (`amswap.w`, `amadd_db.d`, ...): safe out of line.
    Atomic(&'static str),
    /// `break code`
    Break,
    /// `dbcl code` (debugger call)
    Dbcl,
    /// `syscall code`
    Syscall,
    /// Privileged (CSR, IOCSR, TLB, cache maintenance, `ertn`, `idle`): traps in user mode.
    Privileged(&'static str),
    /// Everything else, by its mnemonic: runs anywhere, so out of line.
    Ordinary(&'static str),
    /// No known instruction has this encoding.
    Unknown,
}

/// The instruction classes the engine treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Integer branches and jumps: simulated (LBT's `jiscr0`/`jiscr1`: refused).
    Branch,
    /// `bceqz`/`bcnez`: simulated from the FP condition flags.
    FpBranch,
    /// `pcaddi`, `pcalau12i`, `pcaddu12i`, `pcaddu18i`: simulated.
    PcRelative,
    /// LL/SC: refused.
    LlSc,
    /// AM* atomics: out of line.
    Atomic,
    /// `break`, `dbcl`: refused; `syscall`: out of line.
    Trap,
    /// Refused.
    Privileged,
    /// Out of line.
    Ordinary,
    /// Refused.
    Unknown,
}

/// One decoded LoongArch64 instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Where it is.
    pub addr: u64,
    /// Its encoding.
    pub word: u32,
    /// What it is.
    pub op: Op,
}

/// `break code`.
pub const fn break_word(code: u32) -> u32 {
    0x002a_0000 | (code & 0x7fff)
}

/// `syscall 0`.
pub const SYSCALL_WORD: u32 = 0x002b_0000;

/// `b offs` (byte offset, a multiple of 4 within ±128 MiB), or `None` when out of range.
pub fn b_word(offset: i64) -> Option<u32> {
    if offset % 4 != 0 || !(-(1 << 27)..(1 << 27)).contains(&offset) {
        return None;
    }
    let offs = ((offset >> 2) as u32) & 0x03ff_ffff;
    Some(0x5000_0000 | (offs & 0xffff) << 10 | offs >> 16)
}

/// Sign-extends the low `bits` bits of `value`.
pub const fn sext(value: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value as u64) << shift) as i64 >> shift
}

impl Insn {
    /// Decodes `word` at `addr`.
    pub fn decode(word: u32, addr: u64) -> Insn {
        Insn {
            addr,
            word,
            op: decode_op(word),
        }
    }

    /// `rd` (bits 4..0).
    pub fn rd(&self) -> u32 {
        self.word & 31
    }
    /// `rj` (bits 9..5).
    pub fn rj(&self) -> u32 {
        (self.word >> 5) & 31
    }
    /// `cj` of `bceqz`/`bcnez` (bits 7..5).
    pub fn cj(&self) -> u32 {
        (self.word >> 5) & 7
    }
    /// `offs16 << 2`, sign-extended (2RI16 branches and `jirl`).
    pub fn offs16(&self) -> i64 {
        sext((self.word >> 10) & 0xffff, 16) << 2
    }
    /// `offs21 << 2`, sign-extended (`beqz`, `bnez`, `bceqz`, `bcnez`).
    pub fn offs21(&self) -> i64 {
        sext((self.word >> 10) & 0xffff | (self.word & 31) << 16, 21) << 2
    }
    /// `offs26 << 2`, sign-extended (`b`, `bl`).
    pub fn offs26(&self) -> i64 {
        sext((self.word >> 10) & 0xffff | (self.word & 0x3ff) << 16, 26) << 2
    }
    /// `si20`, sign-extended (PC-relative forms).
    pub fn si20(&self) -> i64 {
        sext((self.word >> 5) & 0xf_ffff, 20)
    }

    /// The class the engine acts on.
    pub fn class(&self) -> Class {
        use Op::*;
        match self.op {
            Beqz | Bnez | Jirl | B | Bl | Beq | Bne | Blt | Bge | Bltu | Bgeu | Jiscr(_) => {
                Class::Branch
            }
            Bceqz | Bcnez => Class::FpBranch,
            Pcaddi | Pcalau12i | Pcaddu12i | Pcaddu18i => Class::PcRelative,
            LlSc(_) => Class::LlSc,
            Atomic(_) => Class::Atomic,
            Break | Dbcl | Syscall => Class::Trap,
            Privileged(_) => Class::Privileged,
            Ordinary(_) => Class::Ordinary,
            Unknown => Class::Unknown,
        }
    }

    /// The mnemonic.
    pub fn mnemonic(&self) -> &'static str {
        use Op::*;
        match self.op {
            Beqz => "beqz",
            Bnez => "bnez",
            Bceqz => "bceqz",
            Bcnez => "bcnez",
            Jirl => "jirl",
            B => "b",
            Bl => "bl",
            Beq => "beq",
            Bne => "bne",
            Blt => "blt",
            Bge => "bge",
            Bltu => "bltu",
            Bgeu => "bgeu",
            Pcaddi => "pcaddi",
            Pcalau12i => "pcalau12i",
            Pcaddu12i => "pcaddu12i",
            Pcaddu18i => "pcaddu18i",
            Break => "break",
            Dbcl => "dbcl",
            Syscall => "syscall",
            Jiscr(m) | LlSc(m) | Atomic(m) | Privileged(m) | Ordinary(m) => m,
            Unknown => "(unknown)",
        }
    }

    /// Handling, with the reason for refusals.
    pub fn handling(&self) -> Handling {
        if let Op::Jiscr(_) = self.op {
            return Handling::Refuse(
                "it jumps relative to an LBT scratch register, which the register set does not \
                 carry (binary-translation extension)"
                    .into(),
            );
        }
        match self.class() {
            Class::Branch | Class::FpBranch | Class::PcRelative => Handling::Simulate,
            Class::Atomic | Class::Ordinary => Handling::OutOfLine,
            Class::Trap if self.op == Op::Syscall => Handling::OutOfLine,
            Class::Trap => Handling::Refuse(
                "it traps by design (a breakpoint or debugger call of its own)".into(),
            ),
            Class::LlSc => Handling::Refuse(
                "it is half of an LL/SC pair: the probe's trap between ll and sc clears the \
                 link bit, so the sc would fail every time and the program would spin"
                    .into(),
            ),
            Class::Privileged => {
                Handling::Refuse("it is privileged: it raises an exception in user mode".into())
            }
            Class::Unknown => Handling::Refuse(format!(
                "0x{:08x} is no LoongArch64 instruction tracekit knows (reserved encoding?)",
                self.word
            )),
        }
    }
}

fn decode_op(w: u32) -> Op {
    use Op::*;
    match w >> 26 {
        0x10 => return Beqz,
        0x11 => return Bnez,
        0x12 => {
            return match (w >> 8) & 3 {
                0 => Bceqz,
                1 => Bcnez,
                // LBT's jumps share the space; the table knows their fixed bits.
                _ => table(w)
                    .filter(|n| n.starts_with("jiscr"))
                    .map_or(Unknown, Jiscr),
            };
        }
        0x13 => return Jirl,
        0x14 => return B,
        0x15 => return Bl,
        0x16 => return Beq,
        0x17 => return Bne,
        0x18 => return Blt,
        0x19 => return Bge,
        0x1a => return Bltu,
        0x1b => return Bgeu,
        _ => {}
    }
    match w >> 25 {
        0x0c => return Pcaddi,
        0x0d => return Pcalau12i,
        0x0e => return Pcaddu12i,
        0x0f => return Pcaddu18i,
        _ => {}
    }
    match w >> 15 {
        0x54 => return Break,
        0x55 => return Dbcl,
        0x56 => return Syscall,
        _ => {}
    }
    let Some(name) = table(w) else {
        return Unknown;
    };
    // The privileged space is 0x04000000..0x07ffffff (csr*, cacop, lddir, ldpte, iocsr*,
    // tlb*, ertn, idle, invtlb); the table names what it decodes there.
    if (0x04..0x08).contains(&(w >> 24)) {
        return Privileged(name);
    }
    if name.starts_with("ll") || name.starts_with("sc") {
        return LlSc(name);
    }
    if name.starts_with("am") {
        return Atomic(name);
    }
    Ordinary(name)
}

/// The mnemonic the generated opcode table gives `w`.
fn table(w: u32) -> Option<&'static str> {
    OPCODES
        .iter()
        .find(|&&(mask, m, _)| w & mask == m)
        .map(|&(_, _, name)| name)
}

/// ABI name of `$r{r}`, as LLVM prints it.
pub fn reg_name(r: u32) -> &'static str {
    const NAMES: [&str; 32] = [
        "$zero", "$ra", "$tp", "$sp", "$a0", "$a1", "$a2", "$a3", "$a4", "$a5", "$a6", "$a7",
        "$t0", "$t1", "$t2", "$t3", "$t4", "$t5", "$t6", "$t7", "$t8", "$r21", "$fp", "$s0", "$s1",
        "$s2", "$s3", "$s4", "$s5", "$s6", "$s7", "$s8",
    ];
    NAMES[r as usize & 31]
}

impl fmt::Display for Insn {
    /// LLVM's syntax for the instructions the engine acts on; the mnemonic and the word for
    /// the rest (which run as they are).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Op::*;
        let m = self.mnemonic();
        let (rd, rj) = (reg_name(self.rd()), reg_name(self.rj()));
        match self.op {
            Beqz | Bnez => write!(f, "{m} {rj}, {}", self.offs21()),
            Bceqz | Bcnez => write!(f, "{m} $fcc{}, {}", self.cj(), self.offs21()),
            Jirl => write!(f, "{m} {rd}, {rj}, {}", self.offs16()),
            B | Bl => write!(f, "{m} {}", self.offs26()),
            Beq | Bne | Blt | Bge | Bltu | Bgeu => {
                write!(f, "{m} {rj}, {rd}, {}", self.offs16())
            }
            Pcaddi | Pcalau12i | Pcaddu12i | Pcaddu18i => write!(f, "{m} {rd}, {}", self.si20()),
            Break | Dbcl | Syscall => write!(f, "{m} {}", self.word & 0x7fff),
            LlSc("ll.w" | "ll.d" | "sc.w" | "sc.d") => {
                write!(
                    f,
                    "{m} {rd}, {rj}, {}",
                    sext((self.word >> 10) & 0x3fff, 14) << 2
                )
            }
            Unknown => write!(f, ".word 0x{:08x}", self.word),
            _ => write!(f, "{m} (0x{:08x})", self.word),
        }
    }
}

/// Applies a branch or PC-relative instruction to `regs`: the pc ends at the next instruction
/// or the branch target. Other classes are an error (they are never simulated).
pub fn simulate(insn: &Insn, regs: &mut Regs) -> Result<(), String> {
    use Op::*;
    let pc = insn.addr;
    let next = pc.wrapping_add(4);
    let (rj, rd) = (regs.get(insn.rj()), regs.get(insn.rd()));
    let branch = |taken: bool, offs: i64| {
        if taken {
            pc.wrapping_add_signed(offs)
        } else {
            next
        }
    };
    regs.pc = match insn.op {
        Beqz => branch(rj == 0, insn.offs21()),
        Bnez => branch(rj != 0, insn.offs21()),
        Bceqz => branch(regs.fcc >> insn.cj() & 1 == 0, insn.offs21()),
        Bcnez => branch(regs.fcc >> insn.cj() & 1 == 1, insn.offs21()),
        Jirl => {
            // The target is read before rd is written: `jirl $ra, $ra, 0` is a real idiom.
            let target = rj.wrapping_add_signed(insn.offs16());
            regs.set(insn.rd(), next);
            target
        }
        B => branch(true, insn.offs26()),
        Bl => {
            regs.set(1, next);
            branch(true, insn.offs26())
        }
        Beq => branch(rj == rd, insn.offs16()),
        Bne => branch(rj != rd, insn.offs16()),
        Blt => branch((rj as i64) < rd as i64, insn.offs16()),
        Bge => branch(rj as i64 >= rd as i64, insn.offs16()),
        Bltu => branch(rj < rd, insn.offs16()),
        Bgeu => branch(rj >= rd, insn.offs16()),
        Pcaddi | Pcalau12i | Pcaddu12i | Pcaddu18i => {
            regs.set(insn.rd(), pc_relative(insn));
            next
        }
        _ => return Err(format!("`{insn}` is not simulated")),
    };
    Ok(())
}

fn pc_relative(insn: &Insn) -> u64 {
    let pc = insn.addr;
    let si = insn.si20();
    match insn.op {
        Op::Pcaddi => pc.wrapping_add_signed(si << 2),
        Op::Pcaddu12i => pc.wrapping_add_signed(si << 12),
        Op::Pcaddu18i => pc.wrapping_add_signed(si << 18),
        Op::Pcalau12i => pc.wrapping_add_signed(si << 12) & !0xfff,
        _ => unreachable!("only PC-relative forms"),
    }
}

/// The slot's words for an out-of-line instruction placed at `slot`: the copy, then the way
/// back (`break 0` for the post-handler, or `b` to the instruction after the original).
pub fn slot_words(insn: &Insn, slot: u64, ret: SlotReturn) -> Result<[u32; 2], String> {
    if insn.handling() != Handling::OutOfLine {
        return Err(format!("`{insn}` does not run out of line"));
    }
    let back = match ret {
        SlotReturn::Breakpoint => break_word(0),
        SlotReturn::Jump => {
            let from = slot.wrapping_add(4);
            let to = insn.addr.wrapping_add(4);
            b_word(to.wrapping_sub(from) as i64)
                .ok_or_else(|| format!("slot 0x{slot:x} is beyond a `b`'s ±128 MiB of 0x{to:x}"))?
        }
    };
    Ok([insn.word, back])
}

impl Arch for LoongArch64 {
    type Regs = Regs;
    type Insn = Insn;

    const MACHINE: Machine = Machine::LoongArch64;
    const BREAKPOINT: &'static [u8] = &break_word(0).to_le_bytes();
    const SYSCALL: &'static [u8] = &SYSCALL_WORD.to_le_bytes();
    const MAX_INSN_LEN: usize = 4;
    const INSN_ALIGN: usize = 4;
    // 16 KiB: the kernel's default for LoongArch, and QEMU user mode's target page.
    const PAGE_SIZE: u64 = 0x4000;
    const SLOT_SIZE: u64 = 16;
    // `b`: a signed 26-bit word offset, ±128 MiB, less one instruction.
    const SLOT_REACH: u64 = (1 << 27) - 8;
    // The generic system call table (asm-generic/unistd.h), as on every new architecture.
    const NR_MMAP: u64 = 222;
    const NR_MPROTECT: u64 = 226;
    const NR_MUNMAP: u64 = 215;

    fn decode(code: &[u8], addr: u64) -> Option<Insn> {
        let bytes = code.get(..4)?.try_into().ok()?;
        addr.is_multiple_of(4)
            .then(|| Insn::decode(u32::from_le_bytes(bytes), addr))
    }

    fn len(_: &Insn) -> usize {
        4
    }

    fn text(insn: &Insn) -> String {
        insn.to_string()
    }

    fn classify(insn: &Insn) -> Handling {
        insn.handling()
    }

    fn can_simulate(insn: &Insn) -> bool {
        insn.handling() == Handling::Simulate
    }

    fn must_simulate(insn: &Insn) -> bool {
        // Every simulated instruction depends on its address.
        Self::can_simulate(insn)
    }

    fn simulate(insn: &Insn, regs: &mut Regs, _mem: &mut dyn Memory) -> io::Result<()> {
        simulate(insn, regs).map_err(io::Error::other)
    }

    fn prepare_slot(insn: &Insn, slot: u64, ret: SlotReturn) -> Result<Vec<u8>, String> {
        let words = slot_words(insn, slot, ret)?;
        Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    fn pc(regs: &Regs) -> u64 {
        regs.pc
    }

    fn set_pc(regs: &mut Regs, pc: u64) {
        regs.pc = pc;
    }

    fn sp(regs: &Regs) -> u64 {
        regs.gpr[3]
    }

    fn breakpoint_address(trap_pc: u64) -> u64 {
        // The exception return address of `break` is the `break` itself.
        trap_pc
    }

    fn args(regs: &Regs) -> [u64; 6] {
        regs.gpr[4..10].try_into().expect("six argument registers")
    }

    fn return_value(regs: &Regs) -> u64 {
        regs.gpr[4]
    }

    fn return_slot(_: &Regs) -> ReturnSlot {
        ReturnSlot::Register
    }

    fn return_register(regs: &Regs) -> u64 {
        regs.gpr[1]
    }

    fn set_return_register(regs: &mut Regs, value: u64) {
        regs.gpr[1] = value;
    }

    fn frame_at_entry(regs: &Regs) -> u64 {
        regs.gpr[3]
    }

    fn frame_at_return(regs: &Regs) -> u64 {
        // The callee restored sp before `jirl $zero, $ra, 0`.
        regs.gpr[3]
    }

    fn syscall_regs(saved: &Regs, at: u64, nr: u64, args: [u64; 6]) -> Regs {
        let mut regs = *saved;
        regs.pc = at;
        regs.gpr[11] = nr;
        regs.gpr[4..10].copy_from_slice(&args);
        regs
    }

    fn syscall_result(regs: &Regs) -> i64 {
        regs.gpr[4] as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(word: u32) -> Insn {
        Insn::decode(word, 0x1_0000)
    }

    #[test]
    fn sign_extension_at_full_width() {
        assert_eq!(sext(0x8_0000, 20), -(1 << 19));
        assert_eq!(sext(0x7_ffff, 20), (1 << 19) - 1);
        // pcaddu18i $a0, -1 at 0x10000: 0x10000 - 2^18, in 64 bits.
        let mut r = Regs::default();
        let i = at(0x1e00_0000 | 0xf_ffff << 5 | 4);
        assert_eq!(i.op, Op::Pcaddu18i);
        simulate(&i, &mut r).unwrap();
        assert_eq!(r.gpr[4], 0x1_0000u64.wrapping_sub(1 << 18));
        assert_eq!(r.pc, 0x1_0004);
    }

    #[test]
    fn b_word_round_trips_and_refuses_out_of_range() {
        for off in [0i64, 4, -4, (1 << 27) - 4, -(1 << 27)] {
            let i = at(b_word(off).unwrap());
            assert_eq!((i.op, i.offs26()), (Op::B, off));
        }
        assert_eq!(b_word(1 << 27), None);
        assert_eq!(b_word(2), None);
    }

    #[test]
    fn classes_of_the_seed_list() {
        assert_eq!(at(0x2000_0000).class(), Class::LlSc); // ll.w
        assert_eq!(at(0x2300_0000).class(), Class::LlSc); // sc.d
        assert_eq!(at(break_word(0)).class(), Class::Trap);
        assert_eq!(at(0x0010_8000).op, Op::Ordinary("add.d"));
        assert_eq!(at(0x3860_0000).class(), Class::Atomic); // amswap.w
        assert_eq!(at(0x0400_0000).class(), Class::Privileged); // csrrd
        assert_eq!(at(0x4800_0300).op, Op::Jiscr("jiscr1"));
        assert!(matches!(at(0x4800_0300).handling(), Handling::Refuse(_)));
        assert_eq!(at(0x4800_03e0).op, Op::Unknown); // jiscr1 with nonzero rd-field bits
        assert!(matches!(at(0x4800_0100).handling(), Handling::Simulate)); // bcnez
        assert!(matches!(at(0xffff_ffff).handling(), Handling::Refuse(_)));
    }

    #[test]
    fn jirl_reads_rj_before_writing_rd_and_zero_stays_zero() {
        let mut r = Regs::default();
        r.gpr[1] = 0x4000;
        // jirl $ra, $ra, 8
        simulate(&at(0x4c00_0000 | 2 << 10 | 1 << 5 | 1), &mut r).unwrap();
        assert_eq!((r.pc, r.gpr[1]), (0x4008, 0x1_0004));
        // pcaddi $zero, 1
        simulate(&at(0x1800_0000 | 1 << 5), &mut r).unwrap();
        assert_eq!(r.get(0), 0);
        assert_eq!(r.gpr[0], 0);
    }
}
