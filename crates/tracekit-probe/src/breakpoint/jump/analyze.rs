//! Whether a probe point can take a jump (the kernel's optprobe `can_optimize`, in user
//! space): which instructions the jump displaces, and why not when it cannot.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter};
use iced_x86::{OpKind, Register};

use crate::breakpoint::arch::x86_64::X86_64;
use crate::breakpoint::engine::ProbeTable;
use crate::symbols::ResolvedProbe;

/// Length of the `jmp rel32` written at a probe point.
pub const JUMP_LEN: usize = 5;

/// How a point is patched, worked out from the file before the target runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointPlan {
    /// The displaced bytes as the file has them (checked against memory before patching).
    pub bytes: Vec<u8>,
    /// Whether the arithmetic flags are dead at the point (a function's first instruction
    /// that no branch of the function targets): the trampoline may then change them.
    pub flags_free: bool,
}

/// Per point of `table`: its plan, or why the jump cannot take it (the int3 engine does).
pub fn plan(
    probes: &[ResolvedProbe],
    table: &ProbeTable<X86_64>,
) -> Vec<Result<PointPlan, String>> {
    table
        .points
        .iter()
        .map(|p| {
            let r = probes
                .iter()
                .find(|r| r.binary == p.binary && r.file_offset == p.file_offset)
                .ok_or_else(|| "no resolved probe for this point".to_owned())?;
            analyze(&r.code, r.symbol_vaddr, r.symbol_size, r.vaddr)
        })
        .collect()
}

/// Decodes the whole function (`code` from its first byte at `start`, `size` bytes) and
/// decides whether the instructions from `addr` on can be displaced by a 5-byte jump.
pub fn analyze(code: &[u8], start: u64, size: u64, addr: u64) -> Result<PointPlan, String> {
    if size == 0 {
        return Err(
            "the function's size is unknown (no ELF symbol size), so a branch into \
                    the displaced bytes cannot be ruled out"
                .into(),
        );
    }
    let code = code
        .get(..size as usize)
        .ok_or("the function's bytes are incomplete")?;
    let insns = decode_all(code, start)?;
    let first = insns
        .iter()
        .position(|i| i.ip() == addr)
        .ok_or_else(|| format!("{addr:#x} is not an instruction boundary of the function"))?;
    let displaced = displaced(&insns[first..], addr)?;
    let end = addr + displaced.iter().map(|i| i.len() as u64).sum::<u64>();
    let mut targeted = false;
    for insn in &insns {
        check_branch(insn, addr, end)?;
        targeted |= branch_target(insn) == Some(addr);
    }
    let off = (addr - start) as usize;
    Ok(PointPlan {
        bytes: code[off..off + (end - addr) as usize].to_vec(),
        flags_free: addr == start && !targeted && !reads_flags_first(&displaced),
    })
}

/// Whether an instruction reads an arithmetic flag that no earlier one of `insns` wrote: the
/// flags are then live at the point (a function entered with flags set on purpose, as
/// `tk_jcc` of the tests is), and the trampoline must keep them.
fn reads_flags_first(insns: &[Instruction]) -> bool {
    use iced_x86::RflagsBits as F;
    let arith = F::OF | F::SF | F::ZF | F::AF | F::CF | F::PF;
    let mut written = 0;
    for insn in insns {
        if insn.rflags_read() & arith & !written != 0 {
            return true;
        }
        written |= insn.rflags_modified();
    }
    false
}

fn decode_all(code: &[u8], start: u64) -> Result<Vec<Instruction>, String> {
    let mut d = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let insn = d.decode();
        if insn.is_invalid() {
            return Err(format!(
                "the function has bytes that do not decode at {:#x} (data in code?)",
                insn.ip()
            ));
        }
        out.push(insn);
    }
    Ok(out)
}

/// The instructions from `addr` covering at least [`JUMP_LEN`] bytes, each one able to run
/// from a trampoline.
fn displaced(from: &[Instruction], addr: u64) -> Result<Vec<Instruction>, String> {
    let mut out = Vec::new();
    let mut len = 0;
    for insn in from {
        if len >= JUMP_LEN {
            break;
        }
        len += insn.len();
        let last = len >= JUMP_LEN;
        if !last && ends_flow(insn) {
            return Err(format!(
                "fewer than 5 bytes of instructions before `{}` ends the code",
                text(insn)
            ));
        }
        relocatable(insn, last)?;
        out.push(*insn);
    }
    if len < JUMP_LEN {
        return Err(format!(
            "fewer than 5 bytes of instructions from {addr:#x} to the function's end"
        ));
    }
    Ok(out)
}

fn ends_flow(insn: &Instruction) -> bool {
    insn.code() != iced_x86::Code::Syscall
        && matches!(
            insn.flow_control(),
            FlowControl::UnconditionalBranch
                | FlowControl::IndirectBranch
                | FlowControl::Return
                | FlowControl::Call
                | FlowControl::IndirectCall
        )
}

/// Whether a displaced instruction can run from a trampoline (`last`: it is the last one
/// displaced, so a call's return address lies outside the patched bytes).
fn relocatable(insn: &Instruction, last: bool) -> Result<(), String> {
    let near = insn.op0_kind() == OpKind::NearBranch64;
    // A system call runs the same from anywhere (a restart re-runs it in the trampoline).
    let ok = insn.code() == iced_x86::Code::Syscall
        || match insn.flow_control() {
            FlowControl::Next => true,
            FlowControl::ConditionalBranch => {
                near && insn.condition_code() != iced_x86::ConditionCode::None
            }
            FlowControl::UnconditionalBranch | FlowControl::Call => near && last,
            FlowControl::Return => last,
            _ => false,
        };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the displaced instruction `{}` cannot run from a trampoline",
            text(insn)
        ))
    }
}

fn branch_target(insn: &Instruction) -> Option<u64> {
    match insn.op0_kind() {
        OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16 => {
            Some(insn.near_branch_target())
        }
        _ => None,
    }
}

/// A branch of the function into `(addr, end)`, or an indirect jump that may go anywhere in
/// the function (a jump table), makes the jump unsafe.
fn check_branch(insn: &Instruction, addr: u64, end: u64) -> Result<(), String> {
    if let Some(t) = branch_target(insn)
        && t > addr
        && t < end
    {
        return Err(format!(
            "`{}` at {:#x} branches to {t:#x}, inside the displaced bytes {addr:#x}..{end:#x}",
            text(insn),
            insn.ip()
        ));
    }
    if insn.flow_control() == FlowControl::IndirectBranch && !got_jump(insn) {
        return Err(format!(
            "the indirect jump `{}` at {:#x} may go through a table into the displaced bytes",
            text(insn),
            insn.ip()
        ));
    }
    Ok(())
}

/// `jmp [rip+X]`: a tail call through the GOT, never into this function.
fn got_jump(insn: &Instruction) -> bool {
    insn.op0_kind() == OpKind::Memory
        && insn.memory_base() == Register::RIP
        && insn.memory_index() == Register::None
}

fn text(insn: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(insn, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_prologue_is_displaced_whole() {
        // push rbp; mov rbp,rsp; mov eax,1; pop rbp; ret
        let code = [0x55, 0x48, 0x89, 0xe5, 0xb8, 1, 0, 0, 0, 0x5d, 0xc3];
        let p = analyze(&code, 0x1000, code.len() as u64, 0x1000).unwrap();
        assert_eq!(p.bytes, code[..9]);
        assert!(p.flags_free);
    }

    #[test]
    fn flags_read_at_entry_are_live() {
        // jne +7; lea rax,[rdi+100]; ret; ...: the caller set the flags.
        let code = [
            0x75, 0x05, 0x48, 0x8d, 0x47, 0x64, 0xc3, 0x48, 0x8d, 0x47, 0x64, 0xc3,
        ];
        let p = analyze(&code, 0x1000, code.len() as u64, 0x1000).unwrap();
        assert!(!p.flags_free);
    }

    #[test]
    fn a_branch_into_the_displaced_bytes_is_refused() {
        // push rbp; mov rbp,rsp; nop; jmp back to 0x1001 (inside)
        let code = [0x55, 0x48, 0x89, 0xe5, 0x90, 0x90, 0xeb, 0xf9];
        let e = analyze(&code, 0x1000, code.len() as u64, 0x1000).unwrap_err();
        assert!(e.contains("inside the displaced bytes"), "{e}");
    }

    #[test]
    fn short_functions_and_tables_are_refused() {
        let e = analyze(&[0x31, 0xc0, 0xc3], 0x1000, 3, 0x1000).unwrap_err();
        assert!(e.contains("fewer than 5"), "{e}");
        // mov eax,1; nop; jmp [rax*8+0x2000]
        let code = [0xb8, 1, 0, 0, 0, 0x90, 0xff, 0x24, 0xc5, 0, 0x20, 0, 0];
        let e = analyze(&code, 0x1000, code.len() as u64, 0x1000).unwrap_err();
        assert!(e.contains("through a table"), "{e}");
    }

    #[test]
    fn a_call_may_only_be_last() {
        // call +0; nop*5; ret: the call is 5 bytes, so it is the last one displaced.
        let code = [0xe8, 0, 0, 0, 0, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3];
        assert!(analyze(&code, 0x1000, code.len() as u64, 0x1000).is_ok());
        // push rbp; call: the call is not last? It is (1 + 5 >= 5): fine as well.
        // nop; nop; call rel8-less forms are not possible, so: jmp (2 bytes) first is refused.
        let code = [0xeb, 0x03, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3];
        let e = analyze(&code, 0x1000, code.len() as u64, 0x1000).unwrap_err();
        assert!(
            e.contains("ends the code") || e.contains("cannot run"),
            "{e}"
        );
    }
}
