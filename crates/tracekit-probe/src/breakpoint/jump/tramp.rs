//! The trampolines' code, assembled with iced-x86 at the address it will run from.
//!
//! Entry trampoline (per point):
//! 1. `lock inc` the point's entry counter (RIP-relative). At a function's first instruction
//!    the arithmetic flags are dead by the ABI, and the trampoline changes them freely; when
//!    they may be live (inside a function, a branch back to the point, or a displaced
//!    instruction that reads them first, see [`super::analyze`]), everything below runs past
//!    the red zone with the flags saved by `pushfq`.
//! 2. Return probes (function entry only): save rax, rcx, rdx, rsi below the stack pointer
//!    (free at a function's entry), read the TSC, find the thread's return stack in the
//!    shared area (hash of its FS base, read with `rdfsbase`; a free one is claimed with
//!    `lock cmpxchg`), take the first slot from the hash of the frame's key (the stack
//!    pointer at entry) that is free or abandoned (a key below this frame's: left by a
//!    longjmp or an exception), store the frame there (key, real return address, TSC, the
//!    return trampoline) and put the return trampoline's address on the stack. A frame
//!    still holding its own return trampoline (a tail call between probed functions) keeps
//!    its one hijack; no free slot in the window counts a miss. One store claims a slot, so
//!    a signal handler of the same thread entering a probed function at any instruction
//!    either sees the slot taken or takes it and frees it before this code resumes.
//! 3. The displaced instructions, re-encoded for their new address; a final `call` becomes
//!    a push of the original return address and a jump (the callee sees the same return
//!    address, and none ever points into the trampoline); then `jmp` back.
//!
//! Return trampoline (per point), reached by the function's `ret`: only registers that are
//! dead after a return (rcx, rsi, rdi, r8–r11, flags) are used; rax and rdx (return values)
//! are kept in r8/r9 around `rdtsc`. It finds the thread's stack and its frame's slot, reads
//! it, frees it, records the latency in ns (`(cycles * mult) >> shift`) with `lock`ed
//! adds, a `lock inc` of its histogram bucket and `lock cmpxchg` loops for max and min, then
//! jumps to the real return address. A frame that cannot be found (the stack was switched
//! under the probe, e.g. by a coroutine library) executes `ud2`: there is no right place to
//! return to.

use iced_x86::code_asm::*;
use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

use super::area::{
    ENTRY, FRAME_SIZE, HASH_MUL, HIST, LAT_MAX, LAT_MIN_INV, LAT_SUM, MISSED, PROBES, RETURNS,
    SLOT_WINDOW, SQ_HI, SQ_LO, THREAD_BITS, THREAD_SIZE,
};

/// Bytes reserved for each trampoline.
pub const TRAMP_SIZE: u64 = 512;

/// TSC cycles to ns: `(cycles * mult) >> shift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsc {
    /// Multiplier (below 2^31: an `imul` immediate).
    pub mult: u32,
    /// Shift.
    pub shift: u32,
}

/// What an entry trampoline does.
#[derive(Debug, Clone)]
pub struct EntryTramp<'a> {
    /// The displaced instructions, decoded at their original (runtime) addresses.
    pub displaced: &'a [Instruction],
    /// Flags may be changed (a function's first instruction).
    pub flags_free: bool,
    /// Count entry hits.
    pub count_entry: bool,
    /// Runtime address of the point's counters.
    pub counters: u64,
    /// Runtime address of the return table.
    pub table: u64,
    /// For return probes: the return trampoline's address.
    pub ret_tramp: Option<u64>,
}

fn err(e: IcedError) -> String {
    format!("assembling a trampoline: {e}")
}

/// `[rip + (abs - next ip)]`, as iced-x86 takes RIP-relative operands: by absolute address.
fn rip(abs: u64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RIP, abs as i64)
}

fn lock_inc(a: &mut CodeAssembler, abs: u64) -> Result<(), IcedError> {
    let mut i = Instruction::with1(Code::Inc_rm64, rip(abs))?;
    i.set_has_lock_prefix(true);
    a.add_instruction(i)
}

fn lea_rip(a: &mut CodeAssembler, reg: Register, abs: u64) -> Result<(), IcedError> {
    a.add_instruction(Instruction::with2(Code::Lea_r64_m, reg, rip(abs))?)
}

/// An assembled entry trampoline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Each displaced instruction's original address and the address of its copy: where a
    /// thread stopped at the original goes, so that the original bytes can be patched.
    pub moved: Vec<(u64, u64)>,
}

/// The entry trampoline, to run at `at`.
pub fn entry(t: &EntryTramp, at: u64) -> Result<Entry, String> {
    if t.displaced.is_empty() {
        return Err("no displaced instruction".into());
    }
    let mut a = CodeAssembler::new(64).map_err(err)?;
    prologue(&mut a, t).map_err(err)?;
    let starts = displaced(&mut a, t.displaced).map_err(err)?;
    let r = a
        .assemble_options(
            at,
            iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .map_err(err)?
        .inner;
    let moved = starts
        .into_iter()
        .filter_map(|(ip, k)| {
            let off = *r.new_instruction_offsets.get(k)?;
            (off != u32::MAX).then(|| (ip, at + u64::from(off)))
        })
        .collect();
    Ok(Entry {
        bytes: fits(r.code_buffer)?,
        moved,
    })
}

fn fits(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.len() as u64 > TRAMP_SIZE {
        return Err(format!(
            "the trampoline is {} bytes, more than {TRAMP_SIZE}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Bytes the prologue puts between the stack pointer at the point and the saved registers
/// when the flags are live: the red zone (a leaf function may use it), then the flags.
const FLAGS_FRAME: i32 = 128 + 8;

/// Counting and hijacking, with the flags saved around them unless they are dead.
fn prologue(a: &mut CodeAssembler, t: &EntryTramp) -> Result<(), IcedError> {
    if !t.flags_free {
        a.lea(rsp, ptr(rsp - 128))?;
        a.pushfq()?;
    }
    if t.count_entry {
        lock_inc(a, t.counters + ENTRY)?;
    }
    if let Some(ret) = t.ret_tramp {
        let extra = if t.flags_free { 0 } else { FLAGS_FRAME };
        hijack(a, t, ret, extra)?;
    }
    if !t.flags_free {
        a.popfq()?;
        a.lea(rsp, ptr(rsp + 128))?;
    }
    Ok(())
}

/// `reg = &stacks[hash(rsi)]` and on to the stack whose key is rsi, claiming a free one on
/// the way (clobbers rax, r11); jumps to `none` when the neighbourhood is full of others.
fn thread_stack(
    a: &mut CodeAssembler,
    reg: AsmRegister64,
    regi: Register,
    table: u64,
    none: CodeLabel,
) -> Result<(), IcedError> {
    let (mut find, mut next, mut have) = (a.create_label(), a.create_label(), a.create_label());
    a.mov(r11, rsi)?;
    a.imul_3(r11, r11, HASH_MUL)?;
    a.shr(r11, 64 - THREAD_BITS)?;
    a.shl(r11, THREAD_SIZE.trailing_zeros())?;
    lea_rip(a, regi, table)?;
    a.add(reg, r11)?;
    a.mov(r11d, PROBES as u32)?;
    a.set_label(&mut find)?;
    a.mov(rax, qword_ptr(reg))?;
    a.cmp(rax, rsi)?;
    a.je(have)?;
    a.test(rax, rax)?;
    a.jnz(next)?;
    a.lock().cmpxchg(qword_ptr(reg), rsi)?;
    a.je(have)?;
    a.set_label(&mut next)?;
    a.add(reg, THREAD_SIZE as i32)?;
    a.dec(r11d)?;
    a.jnz(find)?;
    a.jmp(none)?;
    a.set_label(&mut have)?;
    a.nop()
}

/// rsi = this thread's key: its FS base + 1 (never 0, the free key).
fn thread_key(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.rdfsbase(rsi)?;
    a.lea(rsi, ptr(rsi + 1))
}

/// `rax = &slots[1 + (key >> 4) % 64]` of the thread stack at `base` for frame key rcx.
fn first_slot(a: &mut CodeAssembler, base: AsmRegister64) -> Result<(), IcedError> {
    a.mov(rax, rcx)?;
    a.shr(rax, 4)?;
    a.and(eax, (SLOT_WINDOW - 1) as u32)?;
    a.inc(eax)?;
    a.shl(rax, FRAME_SIZE.trailing_zeros())?;
    a.add(rax, base)
}

/// `extra`: bytes pushed since the function's entry (the return address is above them).
fn hijack(a: &mut CodeAssembler, t: &EntryTramp, ret: u64, extra: i32) -> Result<(), IcedError> {
    let (mut probe, mut next, mut same, mut take, mut miss, mut out) = (
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
    );
    for r in [rax, rcx, rdx, rsi] {
        a.push(r)?;
    }
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.push(rax)?; // the entry time, at [rsp]
    a.lea(rcx, ptr(rsp + 40 + extra))?; // the frame's key: where the return address is
    thread_key(a)?;
    thread_stack(a, rdx, Register::RDX, t.table, miss)?;
    first_slot(a, rdx)?;
    a.mov(esi, SLOT_WINDOW as u32)?;
    // A slot is free (key 0) or abandoned (a key below this frame's: every live frame of the
    // thread is a caller of this one, above it on the stack; frames below were left by a
    // longjmp or an exception). A signal handler entering a probed function between the
    // test and the claim takes the same slot and frees it before this code resumes.
    a.set_label(&mut probe)?;
    a.mov(r11, qword_ptr(rax))?;
    a.cmp(r11, rcx)?;
    a.jb(take)?;
    a.je(same)?;
    a.set_label(&mut next)?;
    a.add(rax, FRAME_SIZE as i32)?;
    a.dec(esi)?;
    a.jnz(probe)?;
    a.jmp(miss)?;
    // The same frame still holding its own return trampoline: a tail call between probed
    // functions keeps its one hijack. Otherwise the frame was abandoned.
    a.set_label(&mut same)?;
    a.mov(r11, qword_ptr(rcx))?;
    a.cmp(r11, qword_ptr(rax + 24))?;
    a.je(miss)?;
    a.set_label(&mut take)?;
    a.mov(qword_ptr(rax), rcx)?;
    a.mov(r11, qword_ptr(rcx))?;
    a.mov(qword_ptr(rax + 8), r11)?;
    a.mov(r11, qword_ptr(rsp))?;
    a.mov(qword_ptr(rax + 16), r11)?;
    lea_rip(a, Register::R11, ret)?;
    a.mov(qword_ptr(rax + 24), r11)?;
    a.mov(qword_ptr(rcx), r11)?;
    a.jmp(out)?;
    a.set_label(&mut miss)?;
    lock_inc(a, t.counters + MISSED)?;
    a.set_label(&mut out)?;
    a.lea(rsp, ptr(rsp + 8))?;
    for r in [rsi, rdx, rcx, rax] {
        a.pop(r)?;
    }
    Ok(())
}

/// Adds the displaced instructions; returns each one's address and the index of its first
/// assembled instruction.
fn displaced(a: &mut CodeAssembler, insns: &[Instruction]) -> Result<Vec<(u64, usize)>, IcedError> {
    let mut starts = Vec::new();
    for insn in insns {
        starts.push((insn.ip(), a.instructions().len()));
        if insn.code() == Code::Call_rel32_64 {
            // Push the original return address, then jump: as the call did.
            let next = insn.next_ip();
            a.lea(rsp, ptr(rsp - 8))?;
            a.mov(dword_ptr(rsp), next as u32)?;
            a.mov(dword_ptr(rsp + 4), (next >> 32) as u32)?;
            a.jmp(insn.near_branch_target())?;
        } else {
            a.add_instruction(*insn)?;
        }
    }
    let back = insns.last().map_or(0, Instruction::next_ip);
    a.jmp(back)?;
    Ok(starts)
}

/// The return trampoline's bytes for the point whose counters are at `counters`, to run at
/// `at`.
pub fn ret(counters: u64, table: u64, tsc: Tsc, at: u64) -> Result<Vec<u8>, String> {
    let mut a = CodeAssembler::new(64).map_err(err)?;
    ret_code(&mut a, counters, table, tsc).map_err(err)?;
    fits(a.assemble(at).map_err(err)?)
}

fn ret_code(a: &mut CodeAssembler, counters: u64, table: u64, tsc: Tsc) -> Result<(), IcedError> {
    let (mut find, mut found, mut lost) = (a.create_label(), a.create_label(), a.create_label());
    a.mov(r8, rax)?;
    a.mov(r9, rdx)?;
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(r10, rax)?; // now
    a.lea(rcx, ptr(rsp - 8))?; // the frame's key: where the return address was
    thread_key(a)?;
    thread_stack(a, rdi, Register::RDI, table, lost)?;
    first_slot(a, rdi)?;
    a.mov(esi, SLOT_WINDOW as u32)?;
    a.set_label(&mut find)?;
    a.cmp(qword_ptr(rax), rcx)?;
    a.je(found)?;
    a.add(rax, FRAME_SIZE as i32)?;
    a.dec(esi)?;
    a.jnz(find)?;
    a.set_label(&mut lost)?;
    a.ud2()?;
    a.set_label(&mut found)?;
    // Read the frame, then free it: a signal handler may take the slot right after.
    a.mov(rcx, qword_ptr(rax + 8))?;
    a.sub(r10, qword_ptr(rax + 16))?;
    a.mov(qword_ptr(rax), 0)?;
    a.imul_3(rsi, r10, tsc.mult as i32)?;
    a.shr(rsi, tsc.shift)?;
    record(a, counters)?;
    a.mov(rax, r8)?;
    a.mov(rdx, r9)?;
    a.jmp(rcx)
}

/// Records latency `rsi` (ns) in the counters at `counters` (clobbers rax, rdx, rdi, r10).
fn record(a: &mut CodeAssembler, counters: u64) -> Result<(), IcedError> {
    let (mut no_hi, mut bucket) = (a.create_label(), a.create_label());
    lea_rip(a, Register::R10, counters)?;
    a.lock().inc(qword_ptr(r10 + RETURNS as i32))?;
    a.lock().add(qword_ptr(r10 + LAT_SUM as i32), rsi)?;
    a.mov(rax, rsi)?;
    a.mul(rax)?;
    a.lock().add(qword_ptr(r10 + SQ_LO as i32), rax)?;
    a.adc(rdx, 0)?;
    a.jz(no_hi)?;
    a.lock().add(qword_ptr(r10 + SQ_HI as i32), rdx)?;
    a.set_label(&mut no_hi)?;
    a.xor(edi, edi)?;
    a.test(rsi, rsi)?;
    a.jz(bucket)?;
    a.bsr(rdi, rsi)?;
    a.inc(edi)?;
    a.set_label(&mut bucket)?;
    a.lock().inc(qword_ptr(r10 + rdi * 8 + HIST as i32))?;
    max(a, LAT_MAX)?;
    a.not(rsi)?;
    max(a, LAT_MIN_INV)
}

/// `[r10 + off] = max([r10 + off], rsi)`, lock-free.
fn max(a: &mut CodeAssembler, off: u64) -> Result<(), IcedError> {
    let (mut again, mut done) = (a.create_label(), a.create_label());
    a.mov(rax, qword_ptr(r10 + off as i32))?;
    a.set_label(&mut again)?;
    a.cmp(rax, rsi)?;
    a.jae(done)?;
    a.lock().cmpxchg(qword_ptr(r10 + off as i32), rsi)?;
    a.jne(again)?;
    a.set_label(&mut done)?;
    a.nop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn decode(code: &[u8], ip: u64) -> Vec<Instruction> {
        Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
            .into_iter()
            .collect()
    }

    #[test]
    fn riprel_and_call_are_relocated() {
        // mov rax,[rip+0x100] at 0x40_0000 (7 bytes): refers to 0x40_0107.
        let insns = decode(&[0x48, 0x8b, 0x05, 0, 1, 0, 0], 0x40_0000);
        let t = EntryTramp {
            displaced: &insns,
            flags_free: true,
            count_entry: true,
            counters: 0x50_0000,
            table: 0x50_1000,
            ret_tramp: Some(0x48_0100),
        };
        let at = 0x48_0000;
        let e = entry(&t, at).unwrap();
        let out = decode(&e.bytes, at);
        // The copy of the mov is where a thread stopped on the original would go.
        let copy = out.iter().find(|i| i.ip() == e.moved[0].1).unwrap();
        assert_eq!((e.moved[0].0, copy.code()), (0x40_0000, Code::Mov_r64_rm64));
        assert!(out.iter().any(|i| i.is_ip_rel_memory_operand()
            && i.ip_rel_memory_address() == 0x40_0107
            && i.code() == Code::Mov_r64_rm64));
        assert_eq!(out.last().unwrap().near_branch_target(), 0x40_0007);
        // call rel32 to 0x40_1000 from 0x40_0000: pushes 0x40_0005, jumps to 0x40_1000.
        let insns = decode(&[0xe8, 0xfb, 0x0f, 0, 0], 0x40_0000);
        let t = EntryTramp {
            displaced: &insns,
            ret_tramp: None,
            ..t
        };
        let out = decode(&entry(&t, at).unwrap().bytes, at);
        assert!(
            out.iter()
                .any(|i| i.code() == Code::Mov_rm32_imm32 && i.immediate32() == 0x40_0005)
        );
        assert!(out.iter().any(|i| i.near_branch_target() == 0x40_1000));
        assert!(!out.iter().any(|i| i.code() == Code::Call_rel32_64));
        assert!(
            !ret(
                0x50_0000,
                0x50_1000,
                Tsc {
                    mult: 1 << 19,
                    shift: 20
                },
                0x48_0100
            )
            .unwrap()
            .is_empty()
        );
    }
}
