//! x86-64 behind the [`Arch`] trait, with iced-x86 decoding and re-encoding.
//!
//! Simulated (one stop per hit, nothing runs out of line): near `call`/`jmp` (direct, register
//! or memory), `jcc`, `jrcxz`, `loop`, `ret`, `push r64`, `mov r64,r64`, `lea`, `mov r64,[rip+d]`,
//! `nop`/`endbr64`. Everything else that does not depend on where it runs is copied to a slot;
//! RIP-relative operands are fixed by re-encoding at the slot's address. Refused: breakpoints,
//! far transfers, `ud2`-like exceptions, transactional memory.

use std::io;

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, ConditionCode, Decoder, DecoderOptions, FlowControl,
    Formatter, Instruction, InstructionBlock, IntelFormatter, OpKind, Register,
};
use libc::user_regs_struct as Regs;

use super::{Arch, Handling, ReturnSlot, SlotReturn};
use crate::breakpoint::transport::Memory;
use crate::symbols::Machine;

/// The x86-64 architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct X86_64;

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;

impl Arch for X86_64 {
    type Regs = Regs;
    type Insn = Instruction;

    const MACHINE: Machine = Machine::X86_64;
    const BREAKPOINT: &'static [u8] = &[0xcc];
    const SYSCALL: &'static [u8] = &[0x0f, 0x05];
    const MAX_INSN_LEN: usize = 15;
    const INSN_ALIGN: usize = 1;
    const PAGE_SIZE: u64 = 4096;
    const SLOT_SIZE: u64 = 64;
    // rel32: ±2 GiB, less a margin for the slot area's own size.
    const SLOT_REACH: u64 = 0x7000_0000;
    // arch/x86/entry/syscalls/syscall_64.tbl (not libc's, which are the host's).
    const NR_MMAP: u64 = 9;
    const NR_MPROTECT: u64 = 10;
    const NR_MUNMAP: u64 = 11;

    fn decode(code: &[u8], addr: u64) -> Option<Instruction> {
        let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
        let insn = d.decode();
        (!insn.is_invalid()).then_some(insn)
    }

    fn len(insn: &Instruction) -> usize {
        insn.len()
    }

    fn text(insn: &Instruction) -> String {
        let mut out = String::new();
        IntelFormatter::new().format(insn, &mut out);
        out
    }

    fn classify(insn: &Instruction) -> Handling {
        if Self::can_simulate(insn) {
            return Handling::Simulate;
        }
        match insn.flow_control() {
            FlowControl::Next => {}
            FlowControl::Interrupt if insn.code() == Code::Syscall => {}
            FlowControl::Interrupt => {
                return Handling::Refuse("it traps (breakpoint or software interrupt)".into());
            }
            FlowControl::Exception => {
                return Handling::Refuse("it raises an exception by design".into());
            }
            FlowControl::XbeginXabortXend => {
                return Handling::Refuse("transactional memory cannot be single-stepped".into());
            }
            // Near branches are all simulated; what is left is far or odd (e.g. 32-bit forms).
            _ => return Handling::Refuse("far or non-64-bit control transfer".into()),
        }
        Handling::OutOfLine
    }

    fn can_simulate(insn: &Instruction) -> bool {
        match insn.flow_control() {
            FlowControl::Call | FlowControl::UnconditionalBranch => {
                insn.op0_kind() == OpKind::NearBranch64
            }
            FlowControl::IndirectCall | FlowControl::IndirectBranch => {
                matches!(insn.code(), Code::Call_rm64 | Code::Jmp_rm64) && operand_readable(insn, 0)
            }
            FlowControl::ConditionalBranch => {
                insn.op0_kind() == OpKind::NearBranch64
                    && (insn.condition_code() != ConditionCode::None
                        || matches!(insn.code(), Code::Jrcxz_rel8_64 | Code::Loop_rel8_64_RCX))
                    && !matches!(
                        insn.code(),
                        Code::Loope_rel8_64_RCX | Code::Loopne_rel8_64_RCX
                    )
            }
            FlowControl::Return => matches!(insn.code(), Code::Retnq | Code::Retnq_imm16),
            FlowControl::Next => match insn.code() {
                Code::Push_r64 => true,
                Code::Mov_r64_rm64 | Code::Mov_rm64_r64 => {
                    insn.op1_kind() == OpKind::Register && insn.op0_kind() == OpKind::Register
                        || insn.op0_kind() == OpKind::Register && insn.is_ip_rel_memory_operand()
                }
                Code::Lea_r64_m => address_computable(insn),
                Code::Nopd
                | Code::Nopw
                | Code::Nopq
                | Code::Nop_rm16
                | Code::Nop_rm32
                | Code::Nop_rm64 => true,
                Code::Endbr64 => true,
                _ => false,
            },
            _ => false,
        }
    }

    fn must_simulate(insn: &Instruction) -> bool {
        insn.flow_control() != FlowControl::Next
    }

    fn simulate(insn: &Instruction, regs: &mut Regs, mem: &mut dyn Memory) -> io::Result<()> {
        let next = insn.next_ip();
        match insn.flow_control() {
            FlowControl::Call => {
                push(regs, mem, next)?;
                regs.rip = insn.near_branch_target();
            }
            FlowControl::UnconditionalBranch => regs.rip = insn.near_branch_target(),
            FlowControl::IndirectCall => {
                let target = read_operand(insn, 0, regs, mem)?;
                push(regs, mem, next)?;
                regs.rip = target;
            }
            FlowControl::IndirectBranch => regs.rip = read_operand(insn, 0, regs, mem)?,
            FlowControl::ConditionalBranch => {
                let taken = match insn.code() {
                    Code::Jrcxz_rel8_64 => regs.rcx == 0,
                    Code::Loop_rel8_64_RCX => {
                        regs.rcx = regs.rcx.wrapping_sub(1);
                        regs.rcx != 0
                    }
                    _ => condition(insn.condition_code(), regs.eflags),
                };
                regs.rip = if taken {
                    insn.near_branch_target()
                } else {
                    next
                };
            }
            FlowControl::Return => {
                regs.rip = mem.read_u64(regs.rsp)?;
                let extra = if insn.code() == Code::Retnq_imm16 {
                    u64::from(insn.immediate16())
                } else {
                    0
                };
                regs.rsp = regs.rsp.wrapping_add(8 + extra);
            }
            _ => {
                match insn.code() {
                    Code::Push_r64 => push(regs, mem, reg(regs, insn.op0_register()))?,
                    Code::Lea_r64_m => {
                        let addr = address(insn, regs);
                        set_reg(regs, insn.op0_register(), addr);
                    }
                    Code::Mov_r64_rm64 | Code::Mov_rm64_r64
                        if insn.op0_kind() == OpKind::Register
                            && insn.op1_kind() == OpKind::Register =>
                    {
                        set_reg(regs, insn.op0_register(), reg(regs, insn.op1_register()));
                    }
                    Code::Mov_r64_rm64 => {
                        let value = mem.read_u64(insn.ip_rel_memory_address())?;
                        set_reg(regs, insn.op0_register(), value);
                    }
                    _ => {} // nops
                }
                regs.rip = next;
            }
        }
        Ok(())
    }

    fn prepare_slot(insn: &Instruction, slot: u64, ret: SlotReturn) -> Result<Vec<u8>, String> {
        let back = match ret {
            SlotReturn::Jump => Instruction::with_branch(Code::Jmp_rel32_64, insn.next_ip())
                .map_err(|e| e.to_string())?,
            SlotReturn::Breakpoint => Instruction::with(Code::Int3),
        };
        let list = [*insn, back];
        let block = InstructionBlock::new(&list, slot);
        let out = BlockEncoder::encode(64, block, BlockEncoderOptions::NONE)
            .map_err(|e| e.to_string())?;
        if out.code_buffer.len() as u64 > Self::SLOT_SIZE {
            return Err(format!(
                "re-encoded slot is {} bytes, more than {}",
                out.code_buffer.len(),
                Self::SLOT_SIZE
            ));
        }
        Ok(out.code_buffer)
    }

    fn pc(regs: &Regs) -> u64 {
        regs.rip
    }

    fn set_pc(regs: &mut Regs, pc: u64) {
        regs.rip = pc;
    }

    fn sp(regs: &Regs) -> u64 {
        regs.rsp
    }

    fn breakpoint_address(trap_pc: u64) -> u64 {
        // int3 is a trap: rip already points past it.
        trap_pc.wrapping_sub(1)
    }

    fn usdt_register(regs: &Regs, reg: crate::usdt::Reg) -> Option<u64> {
        use crate::usdt::Reg::*;
        Some(match reg {
            Rax => regs.rax,
            Rbx => regs.rbx,
            Rcx => regs.rcx,
            Rdx => regs.rdx,
            Rsi => regs.rsi,
            Rdi => regs.rdi,
            Rbp => regs.rbp,
            Rsp => regs.rsp,
            R8 => regs.r8,
            R9 => regs.r9,
            R10 => regs.r10,
            R11 => regs.r11,
            R12 => regs.r12,
            R13 => regs.r13,
            R14 => regs.r14,
            R15 => regs.r15,
            // At the trap rip is past the int3; the site is the breakpoint's address.
            Rip => Self::breakpoint_address(regs.rip),
        })
    }

    fn args(regs: &Regs) -> [u64; 6] {
        [regs.rdi, regs.rsi, regs.rdx, regs.rcx, regs.r8, regs.r9]
    }

    fn return_value(regs: &Regs) -> u64 {
        regs.rax
    }

    fn return_slot(regs: &Regs) -> ReturnSlot {
        ReturnSlot::Memory(regs.rsp)
    }

    fn return_register(_regs: &Regs) -> u64 {
        unreachable!("x86-64 keeps return addresses on the stack")
    }

    fn set_return_register(_regs: &mut Regs, _value: u64) {
        unreachable!("x86-64 keeps return addresses on the stack")
    }

    fn frame_at_entry(regs: &Regs) -> u64 {
        regs.rsp
    }

    fn frame_at_return(regs: &Regs) -> u64 {
        // `ret` popped the return address: its slot is just below the stack pointer.
        regs.rsp.wrapping_sub(8)
    }

    fn syscall_regs(saved: &Regs, at: u64, nr: u64, args: [u64; 6]) -> Regs {
        let mut r = *saved;
        r.rax = nr;
        // Not a restartable syscall: keep the kernel's restart logic away from our registers.
        r.orig_rax = u64::MAX;
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] = args;
        r.rip = at;
        r
    }

    fn syscall_result(regs: &Regs) -> i64 {
        regs.rax as i64
    }
}

fn condition(cc: ConditionCode, f: u64) -> bool {
    let (cf, zf, sf, of, pf) = (
        f & CF != 0,
        f & ZF != 0,
        f & SF != 0,
        f & OF != 0,
        f & PF != 0,
    );
    match cc {
        ConditionCode::o => of,
        ConditionCode::no => !of,
        ConditionCode::b => cf,
        ConditionCode::ae => !cf,
        ConditionCode::e => zf,
        ConditionCode::ne => !zf,
        ConditionCode::be => cf || zf,
        ConditionCode::a => !cf && !zf,
        ConditionCode::s => sf,
        ConditionCode::ns => !sf,
        ConditionCode::p => pf,
        ConditionCode::np => !pf,
        ConditionCode::l => sf != of,
        ConditionCode::ge => sf == of,
        ConditionCode::le => zf || sf != of,
        ConditionCode::g => !zf && sf == of,
        ConditionCode::None => true,
    }
}

fn push(regs: &mut Regs, mem: &mut dyn Memory, value: u64) -> io::Result<()> {
    let sp = regs.rsp.wrapping_sub(8);
    mem.write_u64(sp, value)?;
    regs.rsp = sp;
    Ok(())
}

/// A memory operand whose address the tracer can compute: 64-bit base/index registers
/// (or RIP) and no segment override other than FS/GS, whose bases ptrace gives us.
fn address_computable(insn: &Instruction) -> bool {
    let gpr = |r: Register| r == Register::None || r == Register::RIP || r.is_gpr64();
    gpr(insn.memory_base()) && gpr(insn.memory_index()) && insn.memory_index() != Register::RIP
}

fn operand_readable(insn: &Instruction, op: u32) -> bool {
    match insn.op_kind(op) {
        OpKind::Register => insn.op_register(op).is_gpr64(),
        OpKind::Memory => address_computable(insn),
        _ => false,
    }
}

fn address(insn: &Instruction, regs: &Regs) -> u64 {
    if insn.is_ip_rel_memory_operand() {
        return insn.ip_rel_memory_address();
    }
    let base = match insn.memory_base() {
        Register::None => 0,
        r => reg(regs, r),
    };
    let index = match insn.memory_index() {
        Register::None => 0,
        r => reg(regs, r).wrapping_mul(u64::from(insn.memory_index_scale())),
    };
    let seg = match insn.segment_prefix() {
        Register::FS => regs.fs_base,
        Register::GS => regs.gs_base,
        _ => 0,
    };
    base.wrapping_add(index)
        .wrapping_add(insn.memory_displacement64())
        .wrapping_add(seg)
}

fn read_operand(insn: &Instruction, op: u32, regs: &Regs, mem: &mut dyn Memory) -> io::Result<u64> {
    match insn.op_kind(op) {
        OpKind::Register => Ok(reg(regs, insn.op_register(op))),
        _ => mem.read_u64(address(insn, regs)),
    }
}

fn reg(r: &Regs, reg: Register) -> u64 {
    match reg {
        Register::RAX => r.rax,
        Register::RBX => r.rbx,
        Register::RCX => r.rcx,
        Register::RDX => r.rdx,
        Register::RSI => r.rsi,
        Register::RDI => r.rdi,
        Register::RBP => r.rbp,
        Register::RSP => r.rsp,
        Register::R8 => r.r8,
        Register::R9 => r.r9,
        Register::R10 => r.r10,
        Register::R11 => r.r11,
        Register::R12 => r.r12,
        Register::R13 => r.r13,
        Register::R14 => r.r14,
        Register::R15 => r.r15,
        other => unreachable!("classify() only lets 64-bit GPRs through, got {other:?}"),
    }
}

fn set_reg(r: &mut Regs, reg: Register, v: u64) {
    let slot = match reg {
        Register::RAX => &mut r.rax,
        Register::RBX => &mut r.rbx,
        Register::RCX => &mut r.rcx,
        Register::RDX => &mut r.rdx,
        Register::RSI => &mut r.rsi,
        Register::RDI => &mut r.rdi,
        Register::RBP => &mut r.rbp,
        Register::RSP => &mut r.rsp,
        Register::R8 => &mut r.r8,
        Register::R9 => &mut r.r9,
        Register::R10 => &mut r.r10,
        Register::R11 => &mut r.r11,
        Register::R12 => &mut r.r12,
        Register::R13 => &mut r.r13,
        Register::R14 => &mut r.r14,
        Register::R15 => &mut r.r15,
        other => unreachable!("classify() only lets 64-bit GPRs through, got {other:?}"),
    };
    *slot = v;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breakpoint::transport::SparseMemory;

    fn regs() -> Regs {
        // SAFETY: plain integers; all-zero is valid.
        let mut r: Regs = unsafe { std::mem::zeroed() };
        r.rsp = 0x7000;
        r.rdi = 5;
        r.rsi = 7;
        r
    }

    fn sim(code: &[u8], at: u64, r: &mut Regs, mem: &mut SparseMemory) {
        let insn = X86_64::decode(code, at).unwrap();
        assert_eq!(
            X86_64::classify(&insn),
            Handling::Simulate,
            "{}",
            X86_64::text(&insn)
        );
        X86_64::simulate(&insn, r, mem).unwrap();
    }

    #[test]
    fn simulates_call_push_lea_jcc() {
        let mut m = SparseMemory::default();
        let mut r = regs();
        sim(&[0xe8, 0x10, 0, 0, 0], 0x1000, &mut r, &mut m); // call +0x10
        assert_eq!(
            (r.rip, r.rsp, m.read_u64(0x6ff8).unwrap()),
            (0x1015, 0x6ff8, 0x1005)
        );
        sim(&[0x55], 0x1015, &mut r, &mut m); // push rbp
        assert_eq!((r.rip, r.rsp), (0x1016, 0x6ff0));
        sim(&[0x48, 0x8d, 0x04, 0x37], 0x1016, &mut r, &mut m); // lea rax,[rdi+rsi]
        assert_eq!(r.rax, 12);
        r.eflags = ZF;
        sim(&[0x75, 0x05], 0x2000, &mut r, &mut m); // jne +5: not taken
        assert_eq!(r.rip, 0x2002);
        r.eflags = 0;
        sim(&[0x75, 0x05], 0x2000, &mut r, &mut m); // taken
        assert_eq!(r.rip, 0x2007);
        r.rsp = 0x6ff8;
        sim(&[0xc3], 0x3000, &mut r, &mut m); // ret
        assert_eq!((r.rip, r.rsp), (0x1005, 0x7000));
    }

    #[test]
    fn riprel_out_of_line_is_reencoded_at_the_slot() {
        // add qword ptr [rip+0x100], rax  at 0x1000 → refers to 0x1107.
        let insn = X86_64::decode(&[0x48, 0x01, 0x05, 0x00, 0x01, 0, 0], 0x1000).unwrap();
        assert_eq!(X86_64::classify(&insn), Handling::OutOfLine);
        let slot = X86_64::prepare_slot(&insn, 0x5000, SlotReturn::Jump).unwrap();
        let copy = X86_64::decode(&slot, 0x5000).unwrap();
        assert_eq!(copy.ip_rel_memory_address(), 0x1107);
        let back = X86_64::decode(&slot[copy.len()..], 0x5000 + copy.len() as u64).unwrap();
        assert_eq!(back.near_branch_target(), 0x1007);
    }

    #[test]
    fn refuses_int3_and_ud2() {
        for code in [&[0xcc][..], &[0x0f, 0x0b]] {
            let insn = X86_64::decode(code, 0).unwrap();
            assert!(matches!(X86_64::classify(&insn), Handling::Refuse(_)));
        }
    }
}
