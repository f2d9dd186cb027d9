//! The system calls that create the rescue area run before there is one, so no handler can
//! put a thread right if tracekit dies during them; and a single step would end in a SIGTRAP
//! that a thread blocking it turns into the loss of the handler (see `rescue.rs`). They, and
//! every later injected call where this stub can be used, run instead from a stub that puts
//! the thread right by itself: it makes the call, loads every register the thread had
//! before, and jumps to where the thread was (or back onto the system call it was
//! interrupted in, as the kernel would restart it). tracekit drives it with
//! `PTRACE_SYSCALL`, not a single step, so a tracer that dies leaves no trap flag: the thread
//! simply runs the stub to its end. The stub lives in the unused tail of the vDSO's last
//! page, which nothing reads or runs (the write makes the process its own copy of that page).
//!
//! At an exec stop the thread is still inside `execve`: it is first taken to the call's exit
//! (`PTRACE_SYSCALL`), so that the registers saved are the ones the new program starts with.
//! System call stops are `SIGTRAP | 0x80` (`PTRACE_O_TRACESYSGOOD`, which the session sets),
//! without which `PTRACE_GET_SYSCALL_INFO` cannot tell an entry from an exit.

use std::io;

use object::Endianness;
use object::elf::FileHeader64;
use object::read::elf::FileHeader;

use crate::breakpoint::transport::Memory;
use crate::breakpoint::transport::ptrace::session::waitpid;
use crate::breakpoint::transport::ptrace::target::PtraceTarget;

/// x86-64's `restart_syscall`.
const NR_RESTART_SYSCALL: u64 = 219;
/// Bounded: a thread that keeps stopping for something else must not hold the tracer.
const MAX_STOPS: usize = 1000;

/// `user_regs_struct` indices (x86-64, arch/x86/include/asm/user_64.h).
mod reg {
    pub const R15: usize = 0;
    pub const R14: usize = 1;
    pub const R13: usize = 2;
    pub const R12: usize = 3;
    pub const RBP: usize = 4;
    pub const RBX: usize = 5;
    pub const R11: usize = 6;
    pub const R10: usize = 7;
    pub const R9: usize = 8;
    pub const R8: usize = 9;
    pub const RAX: usize = 10;
    pub const RCX: usize = 11;
    pub const RDX: usize = 12;
    pub const RSI: usize = 13;
    pub const RDI: usize = 14;
    pub const ORIG_RAX: usize = 15;
    pub const RIP: usize = 16;
}

/// The general registers the stub loads, with their encoding numbers (`movabs` takes the
/// low three bits in the opcode and the fourth in REX.B). `rsp` is never changed.
const GPRS: [(usize, u8); 15] = [
    (reg::RAX, 0),
    (reg::RCX, 1),
    (reg::RDX, 2),
    (reg::RBX, 3),
    (reg::RBP, 5),
    (reg::RSI, 6),
    (reg::RDI, 7),
    (reg::R8, 8),
    (reg::R9, 9),
    (reg::R10, 10),
    (reg::R11, 11),
    (reg::R12, 12),
    (reg::R13, 13),
    (reg::R14, 14),
    (reg::R15, 15),
];

/// x86-64 `user_regs_struct`, as plain words.
pub(super) type Words = [u64; 27];

/// Where the stub goes in `pid`: the unused tail of the vDSO's mapping (past its ELF
/// headers, segments and section headers). `None` without a vDSO or room in it.
pub(super) fn stub_address(pid: i32, mem: &mut PtraceTarget) -> io::Result<Option<u64>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let Some((start, end)) = maps.lines().find(|l| l.ends_with("[vdso]")).and_then(|l| {
        let (a, b) = l.split_whitespace().next()?.split_once('-')?;
        Some((
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        ))
    }) else {
        return Ok(None);
    };
    let mut image = vec![0u8; (end - start) as usize];
    mem.read(start, &mut image)?;
    let Some(used) = used_bytes(&image) else {
        return Ok(None);
    };
    let at = used.next_multiple_of(16);
    Ok((at + STUB_LEN <= image.len() as u64).then_some(start + at))
}

/// How many bytes at the start of an ELF image its headers, segments and sections use.
fn used_bytes(image: &[u8]) -> Option<u64> {
    let header = FileHeader64::<Endianness>::parse(image).ok()?;
    let e = header.endian().ok()?;
    let sections = header.e_shoff(e) + u64::from(header.e_shentsize(e)) * header.e_shnum(e) as u64;
    let segments = header.program_headers(e, image).ok()?;
    let loaded = (segments.iter())
        .map(|p| p.p_offset.get(e) + p.p_filesz.get(e))
        .max()
        .unwrap_or(0);
    Some(sections.max(loaded))
}

/// The stub's length: 7 + 15 `movabs`, `syscall`, `jmp [rip]` and its target.
const STUB_LEN: u64 = 22 * 10 + 2 + 6 + 8;

/// Registers as the thread goes on after the injection: `saved`, or, when it had been
/// stopped inside a system call the kernel restarts, set to run that call again.
pub(super) fn resumed(saved: &Words) -> Words {
    let mut regs = *saved;
    let error = -(saved[reg::RAX] as i64);
    if (saved[reg::ORIG_RAX] as i64) < 0 {
        return regs;
    }
    // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND; ERESTART_RESTARTBLOCK (linux/errno.h).
    let nr = match error {
        512..=514 => saved[reg::ORIG_RAX],
        516 => NR_RESTART_SYSCALL,
        _ => return regs,
    };
    regs[reg::RAX] = nr;
    regs[reg::RIP] = saved[reg::RIP] - 2;
    regs
}

/// The stub: load the call's number and arguments, `syscall`, load `after`, jump to its pc.
fn stub(nr: u64, args: [u64; 6], after: &Words) -> Vec<u8> {
    let mut code = Vec::with_capacity(STUB_LEN as usize);
    let movabs = |code: &mut Vec<u8>, r: u8, v: u64| {
        code.extend([0x48 | (r >> 3), 0xb8 + (r & 7)]);
        code.extend(v.to_le_bytes());
    };
    let call = [nr, args[0], args[1], args[2], args[3], args[4], args[5]];
    for (r, v) in [0u8, 7, 6, 2, 10, 8, 9].into_iter().zip(call) {
        movabs(&mut code, r, v);
    }
    code.extend([0x0f, 0x05]);
    for (i, r) in GPRS {
        movabs(&mut code, r, after[i]);
    }
    code.extend([0xff, 0x25, 0, 0, 0, 0]);
    code.extend(after[reg::RIP].to_le_bytes());
    debug_assert_eq!(code.len() as u64, STUB_LEN);
    code
}

/// Where the stub's `syscall` ends (the pc at its exit stop).
fn after_syscall(stub: u64) -> u64 {
    stub + 7 * 10 + 2
}

/// Runs system call `nr` in stopped thread `tid` from the stub at `at` and puts the thread
/// back (see the module's doc); `at_exec`: the thread is at its exec stop. A signal that
/// arrives meanwhile is kept in `pending_sig`. Returns the call's raw result, or `None`
/// where the stub cannot stand in for the kernel (the caller single-steps instead):
///
/// - in a vfork (its end waits for the child) or at a thread's exit;
/// - stopped for a signal inside a call the kernel restarts or ends with EINTR depending
///   on that signal's handler, which tracekit delivers later.
///
/// A thread stopped at an event inside a call (clone, fork, exec) is first run to the
/// call's exit: the kernel writes the call's result (a new thread's id) only then.
pub(super) fn run(
    mem: &mut PtraceTarget,
    tid: i32,
    at: u64,
    at_exec: bool,
    nr: u64,
    args: [u64; 6],
    pending_sig: &mut i32,
) -> io::Result<Option<i64>> {
    use libc::{PTRACE_EVENT_CLONE, PTRACE_EVENT_EXEC, PTRACE_EVENT_EXIT, PTRACE_EVENT_FORK};
    use libc::{PTRACE_EVENT_VFORK, PTRACE_EVENT_VFORK_DONE};
    let event = stop_event(tid);
    if matches!(event, Some(PTRACE_EVENT_VFORK | PTRACE_EVENT_EXIT)) {
        return Ok(None);
    }
    let inside_call = [
        PTRACE_EVENT_FORK,
        PTRACE_EVENT_CLONE,
        PTRACE_EVENT_EXEC,
        PTRACE_EVENT_VFORK_DONE,
    ];
    if at_exec || event.is_some_and(|e| inside_call.contains(&e)) {
        syscall_exit(tid, None, pending_sig)?;
    }
    let saved = get(tid)?;
    let after = resumed(&saved);
    if *pending_sig != 0 && after != saved {
        return Ok(None);
    }
    mem.write(at, &stub(nr, args, &after))?;
    let mut regs = saved;
    regs[reg::RIP] = at;
    // Not a system call to restart: the kernel must not move the pc back from the stub.
    regs[reg::ORIG_RAX] = u64::MAX;
    set(tid, &regs)?;
    let outcome = syscall_exit(tid, Some(after_syscall(at)), pending_sig).and_then(|()| get(tid));
    // Whatever happened, the thread goes on as it would have (best effort if it is gone).
    let back = set(tid, &after);
    let regs = outcome?;
    back?;
    Ok(Some(regs[reg::RAX] as i64))
}

/// The ptrace event `tid` is stopped at (`si_code >> 8` of its stop's SIGTRAP), if any.
fn stop_event(tid: i32) -> Option<i32> {
    let mut info = [0i32; 32];
    // SAFETY: PTRACE_GETSIGINFO writes one 128-byte siginfo_t to the pointer, which points to
    // 128 bytes we own.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, tid, 0, info.as_mut_ptr()) };
    (r == 0 && info[0] == libc::SIGTRAP && info[2] >> 8 != 0).then_some(info[2] >> 8)
}

/// Runs `tid` (`PTRACE_SYSCALL`) to the exit of a system call (the one whose pc is then
/// `pc`, when given). Other stops are passed over: a signal is kept for later.
fn syscall_exit(tid: i32, pc: Option<u64>, pending_sig: &mut i32) -> io::Result<()> {
    for _ in 0..MAX_STOPS {
        // SAFETY: resuming a stopped tracee; no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let status = waitpid(tid, libc::__WALL).map_err(io::Error::other)?;
        if !libc::WIFSTOPPED(status) {
            return Err(io::Error::other("the thread exited"));
        }
        let sig = libc::WSTOPSIG(status);
        if sig == libc::SIGTRAP | 0x80 {
            let (op, ip) = syscall_info(tid)?;
            if op == libc::PTRACE_SYSCALL_INFO_EXIT && pc.is_none_or(|pc| pc == ip) {
                return Ok(());
            }
        } else if status >> 16 == 0 && *pending_sig == 0 {
            // A signal for the program (not a ptrace event): kept for later, never dropped
            // for another (one is kept at a time, as the session does).
            *pending_sig = sig;
        }
    }
    Err(io::Error::other(
        "the injected system call did not complete",
    ))
}

/// The `op` and instruction pointer of `tid`'s stop (`struct ptrace_syscall_info`'s head).
fn syscall_info(tid: i32) -> io::Result<(u8, u64)> {
    let mut info = [0u64; 11];
    // SAFETY: the kernel writes at most `size` (the buffer's) bytes to the pointer.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            tid,
            size_of_val(&info),
            info.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(((info[0] & 0xff) as u8, info[1]))
}

fn get(tid: i32) -> io::Result<Words> {
    let mut regs: Words = [0; 27];
    // SAFETY: PTRACE_GETREGS writes one x86-64 user_regs_struct (27 u64s) to the pointer,
    // which points to 27 u64s we own.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, regs.as_mut_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(regs)
}

fn set(tid: i32, regs: &Words) -> io::Result<()> {
    // SAFETY: PTRACE_SETREGS reads one x86-64 user_regs_struct (27 u64s) from the pointer.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0, regs.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_is_as_long_as_its_layout_says() {
        let after = [0u64; 27];
        let code = stub(9, [1, 2, 3, 4, 5, 6], &after);
        assert_eq!(code.len() as u64, STUB_LEN);
        assert_eq!(&code[70..72], &[0x0f, 0x05]);
        // r10 (the fourth argument) needs REX.B: 49 ba.
        assert_eq!(&code[40..42], &[0x49, 0xba]);
    }

    #[test]
    fn an_interrupted_restartable_call_runs_again() {
        let mut saved = [0u64; 27];
        saved[reg::ORIG_RAX] = 0; // read
        saved[reg::RAX] = (-512i64) as u64;
        saved[reg::RIP] = 0x1002;
        let r = resumed(&saved);
        assert_eq!((r[reg::RAX], r[reg::RIP]), (0, 0x1000));
        saved[reg::RAX] = (-4i64) as u64; // EINTR: delivered as it is
        assert_eq!(resumed(&saved), saved);
        saved[reg::ORIG_RAX] = u64::MAX;
        saved[reg::RAX] = (-512i64) as u64; // not in a system call
        assert_eq!(resumed(&saved), saved);
    }
}
