//! USDT probes in the BPF engine: the argument recipes the BPF program reads (`usdt_specs`),
//! and uprobes with a reference counter (the probe's semaphore), which aya's `UProbe::attach`
//! does not offer: the uprobe perf event is opened here with `ref_ctr_offset` in its config
//! (`/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset`: bits 32-63), and the
//! program attached to it with a BPF link that carries the cookie. The kernel then increments
//! the semaphore in every traced process that maps the file (also when it maps it later) and
//! decrements it when the probe goes away.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use aya::Pod;

use crate::usdt::{Operand, UsdtArg};

/// Arguments the BPF program decodes (`USDT_ARGS` in uprobe.bpf.c).
pub const USDT_ARGS: usize = 6;
const ARG_NONE: u32 = 0;
const ARG_IMM: u32 = 1;
const ARG_REG: u32 = 2;
const ARG_MEM: u32 = 3;
const NO_INDEX: u32 = u32::MAX;
/// perf_event_open's flag (linux/perf_event.h; the libc crate does not have it).
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// Mirror of `struct usdt_arg` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct KernelArg {
    off: u64,
    kind: u32,
    size: u32,
    reg: u32,
    index: u32,
    scale: u32,
    pad: u32,
}

/// Mirror of `struct usdt_spec` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct KernelSpec {
    args: [KernelArg; USDT_ARGS],
}

// SAFETY: plain repr(C) structs of integers without padding; any bit pattern is valid.
unsafe impl Pod for KernelArg {}
// SAFETY: as above.
unsafe impl Pod for KernelSpec {}

/// The recipe of a probe's first [`USDT_ARGS`] arguments (unknown operands read as 0, and
/// print as `?`).
pub(super) fn kernel_spec(args: &[UsdtArg]) -> KernelSpec {
    let mut spec = KernelSpec::default();
    for (k, a) in spec.args.iter_mut().zip(args) {
        *k = match &a.operand {
            Operand::Imm(v) => KernelArg {
                off: *v as u64,
                kind: ARG_IMM,
                ..Default::default()
            },
            Operand::Reg(r) => KernelArg {
                kind: ARG_REG,
                reg: r.pt_regs_offset(),
                ..Default::default()
            },
            Operand::Mem {
                base,
                offset,
                index,
            } => KernelArg {
                off: *offset as u64,
                kind: ARG_MEM,
                size: u32::from(a.size),
                reg: base.pt_regs_offset(),
                index: index.map_or(NO_INDEX, |(r, _)| r.pt_regs_offset()),
                scale: index.map_or(0, |(_, s)| u32::from(s)),
                pad: 0,
            },
            Operand::Unknown(_) => KernelArg {
                kind: ARG_NONE,
                ..Default::default()
            },
        };
    }
    spec
}

/// A uprobe with a reference counter: the perf event and the link attaching the program.
/// Dropping it detaches the program and lets the kernel decrement the semaphore.
pub(super) struct RefCtrProbe {
    _link: OwnedFd,
    _event: OwnedFd,
}

/// The uprobe PMU's perf event type.
fn uprobe_pmu_type() -> io::Result<u32> {
    let text = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other("unreadable uprobe PMU type"))
}

/// Attaches `prog` (a loaded uprobe program) at `offset` of `binary` with the semaphore at
/// file offset `ref_ctr` and `cookie`, firing in process `pid` only (0: every process).
pub(super) fn attach_with_ref_ctr(
    prog: &impl AsFd,
    binary: &Path,
    offset: u64,
    ref_ctr: u64,
    pid: u32,
    cookie: u64,
) -> io::Result<RefCtrProbe> {
    let event = open_uprobe(binary, offset, ref_ctr, pid)?;
    // union bpf_attr, BPF_LINK_CREATE: prog_fd, target_fd, attach_type, flags, then
    // perf_event.bpf_cookie at byte 16.
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PERF_EVENT: u64 = 41;
    let mut attr = [0u64; 8];
    attr[0] = prog.as_fd().as_raw_fd() as u32 as u64 | ((event.as_raw_fd() as u32 as u64) << 32);
    attr[1] = BPF_PERF_EVENT;
    attr[2] = cookie;
    // SAFETY: a valid bpf_attr of the size given; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_ptr(),
            size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(RefCtrProbe {
        _link: link,
        _event: event,
    })
}

/// `perf_event_open` of a uprobe with a reference counter (as aya opens one, plus the
/// `ref_ctr_offset` config bits).
fn open_uprobe(binary: &Path, offset: u64, ref_ctr: u64, pid: u32) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(binary.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // struct perf_event_attr (PERF_ATTR_SIZE_VER7, 128 bytes) as u64 words: type and size,
    // config, ..., config1 (the path) at word 7, config2 (the offset) at word 8.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(uprobe_pmu_type()?) | ((size_of_val(&attr) as u64) << 32);
    attr[1] = ref_ctr << 32;
    attr[7] = path.as_ptr() as u64;
    attr[8] = offset;
    let (pid, cpu) = match pid {
        0 => (-1, 0),
        p => (p as i32, -1),
    };
    // SAFETY: a valid perf_event_attr of the size it states; `path` outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            pid,
            cpu,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
