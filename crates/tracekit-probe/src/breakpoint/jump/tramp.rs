//! The trampolines' code, assembled with iced-x86 at the address it will run from.
//!
//! Entry trampoline (per point):
//! 1. `lock inc` the point's entry counter (RIP-relative). At a function's first instruction
//!    the arithmetic flags are dead by the ABI, and the trampoline changes them freely; when
//!    they may be live (inside a function, a branch back to the point, or a displaced
//!    instruction that reads them first, see [`super::analyze`]), everything below runs past
//!    the red zone with the flags saved by `pushfq`.
//! 2. Return probes (function entry only): save rax, rcx, rdx, rsi below the stack pointer
//!    (free at a function's entry), read the TSC, hash the stack pointer at entry (the
//!    address of the return address), claim a free entry of the shared table with
//!    `lock cmpxchg` (up to [`PROBES`] neighbours), store the real return address and the
//!    TSC there and put the return trampoline's address on the stack. A full neighbourhood,
//!    or a frame already hijacked (a tail call between probed functions), counts a miss.
//! 3. The displaced instructions, re-encoded for their new address; a final `call` becomes
//!    a push of the original return address and a jump (the callee sees the same return
//!    address, and none ever points into the trampoline); then `jmp` back.
//!
//! Return trampoline (per point), reached by the function's `ret`: only registers that are
//! dead after a return (rcx, rsi, rdi, r8–r11, flags) are used; rax and rdx (return values)
//! are kept in r8/r9 around `rdtsc`. It finds the entry by the same hash, frees it, records
//! the latency in ns (`(cycles * mult) >> shift`) with `lock`ed adds, a `lock inc` of its
//! histogram bucket and `lock cmpxchg` loops for max and min, then jumps to the real return
//! address. An entry that cannot be found (the table was damaged) executes `ud2`: there is
//! no right place to return to.

use iced_x86::code_asm::*;
use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

use super::area::{
    ENTRY, ENTRY_SIZE, HASH_MUL, HIST, LAT_MAX, LAT_MIN_INV, LAT_SUM, MISSED, PROBES, RETURNS,
    SLOT_BITS, SQ_HI, SQ_LO,
};

/// Bytes reserved for each trampoline.
pub const TRAMP_SIZE: u64 = 256;

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

/// The entry trampoline's bytes, to run at `at`.
pub fn entry(t: &EntryTramp, at: u64) -> Result<Vec<u8>, String> {
    if t.displaced.is_empty() {
        return Err("no displaced instruction".into());
    }
    let mut a = CodeAssembler::new(64).map_err(err)?;
    prologue(&mut a, t).map_err(err)?;
    displaced(&mut a, t.displaced).map_err(err)?;
    let bytes = a.assemble(at).map_err(err)?;
    fits(bytes)
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

/// `reg = &table[hash(key)]` (clobbers r11).
fn slot_of(
    a: &mut CodeAssembler,
    key: AsmRegister64,
    reg: AsmRegister64,
    regi: Register,
    table: u64,
) -> Result<(), IcedError> {
    a.mov(r11, key)?;
    a.imul_3(r11, r11, HASH_MUL)?;
    a.shr(r11, 64 - SLOT_BITS)?;
    a.shl(r11, ENTRY_SIZE.trailing_zeros())?;
    lea_rip(a, regi, table)?;
    a.add(reg, r11)
}

/// `extra`: bytes pushed since the function's entry (the return address is above them).
fn hijack(a: &mut CodeAssembler, t: &EntryTramp, ret: u64, extra: i32) -> Result<(), IcedError> {
    let (mut try_, mut claimed, mut miss, mut out) = (
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
    );
    for r in [rax, rcx, rdx, rsi] {
        a.push(r)?;
    }
    a.lea(rcx, ptr(rsp + 32 + extra))?; // the key: where the return address is
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(rsi, rax)?;
    slot_of(a, rcx, rdx, Register::RDX, t.table)?;
    a.mov(r11d, PROBES as u32)?;
    a.set_label(&mut try_)?;
    a.xor(eax, eax)?;
    a.lock().cmpxchg(qword_ptr(rdx), rcx)?;
    a.je(claimed)?;
    a.cmp(rax, rcx)?;
    a.je(miss)?;
    a.add(rdx, ENTRY_SIZE as i32)?;
    a.dec(r11d)?;
    a.jnz(try_)?;
    a.set_label(&mut miss)?;
    lock_inc(a, t.counters + MISSED)?;
    a.jmp(out)?;
    a.set_label(&mut claimed)?;
    a.mov(rax, qword_ptr(rcx))?;
    a.mov(qword_ptr(rdx + 8), rax)?;
    a.mov(qword_ptr(rdx + 16), rsi)?;
    lea_rip(a, Register::RAX, ret)?;
    a.mov(qword_ptr(rcx), rax)?;
    a.set_label(&mut out)?;
    for r in [rsi, rdx, rcx, rax] {
        a.pop(r)?;
    }
    Ok(())
}

fn displaced(a: &mut CodeAssembler, insns: &[Instruction]) -> Result<(), IcedError> {
    for insn in insns {
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
    a.jmp(back)
}

/// The return trampoline's bytes for the point whose counters are at `counters`, to run at
/// `at`.
pub fn ret(counters: u64, table: u64, tsc: Tsc, at: u64) -> Result<Vec<u8>, String> {
    let mut a = CodeAssembler::new(64).map_err(err)?;
    ret_code(&mut a, counters, table, tsc).map_err(err)?;
    fits(a.assemble(at).map_err(err)?)
}

fn ret_code(a: &mut CodeAssembler, counters: u64, table: u64, tsc: Tsc) -> Result<(), IcedError> {
    let (mut find, mut found) = (a.create_label(), a.create_label());
    a.mov(r8, rax)?;
    a.mov(r9, rdx)?;
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(rsi, rax)?;
    a.lea(rcx, ptr(rsp - 8))?; // the key: where the return address was
    slot_of(a, rcx, rdi, Register::RDI, table)?;
    a.mov(r10d, PROBES as u32)?;
    a.set_label(&mut find)?;
    a.cmp(qword_ptr(rdi), rcx)?;
    a.je(found)?;
    a.add(rdi, ENTRY_SIZE as i32)?;
    a.dec(r10d)?;
    a.jnz(find)?;
    a.ud2()?;
    a.set_label(&mut found)?;
    a.mov(rcx, qword_ptr(rdi + 8))?;
    a.sub(rsi, qword_ptr(rdi + 16))?;
    a.mov(qword_ptr(rdi), 0)?;
    a.imul_3(rsi, rsi, tsc.mult as i32)?;
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
        let code = entry(&t, at).unwrap();
        let out = decode(&code, at);
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
        let out = decode(&entry(&t, at).unwrap(), at);
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
