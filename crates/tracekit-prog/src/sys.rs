//! The `bpf(2)` calls aya 0.14 does not make the way a test harness needs.
//!
//! aya 0.14 has `TestRun`, but on failure it drops the attribute block, so the size the
//! kernel wrote back with ENOSPC (`data_size_out`) is lost, and it cannot pass a CPU for
//! packet programs. It also cannot load `SEC("syscall")` programs. These two functions are
//! the only `unsafe` in the crate.

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_type};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Buffers and knobs of one `BPF_PROG_TEST_RUN` call. Empty slices are passed as NULL.
pub(crate) struct TestRunIo<'a> {
    pub data_in: &'a [u8],
    pub data_out: &'a mut [u8],
    /// Mutable because syscall programs write their context back into `ctx_in`.
    pub ctx_in: &'a mut [u8],
    pub ctx_out: &'a mut [u8],
    pub repeat: u32,
    pub flags: u32,
    pub cpu: u32,
}

/// What the kernel wrote back. It is filled in on ENOSPC too, with the true output sizes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TestRunOut {
    pub retval: u32,
    pub duration_ns: u32,
    pub data_size_out: u32,
    pub ctx_size_out: u32,
}

fn ptr_len(buf: &[u8]) -> (u64, u32) {
    if buf.is_empty() {
        (0, 0)
    } else {
        (buf.as_ptr() as u64, buf.len() as u32)
    }
}

/// Runs `BPF_PROG_TEST_RUN` on `prog`. Returns the kernel's output and the error, if any.
pub(crate) fn prog_test_run(
    prog: BorrowedFd<'_>,
    io: TestRunIo<'_>,
) -> (TestRunOut, Option<io::Error>) {
    let (data_in, data_size_in) = ptr_len(io.data_in);
    let (data_out, data_size_out) = ptr_len(io.data_out);
    let (ctx_in, ctx_size_in) = ptr_len(io.ctx_in);
    let (ctx_out, ctx_size_out) = ptr_len(io.ctx_out);
    // SAFETY: bpf_attr is a C union of integer fields; all-zero bytes are a valid value and
    // are what the kernel requires in the fields we do not set.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.test.prog_fd = prog.as_raw_fd() as u32;
    attr.test.data_in = data_in;
    attr.test.data_size_in = data_size_in;
    attr.test.data_out = data_out;
    attr.test.data_size_out = data_size_out;
    attr.test.ctx_in = ctx_in;
    attr.test.ctx_size_in = ctx_size_in;
    attr.test.ctx_out = ctx_out;
    attr.test.ctx_size_out = ctx_size_out;
    attr.test.repeat = io.repeat;
    attr.test.flags = io.flags;
    attr.test.cpu = io.cpu;
    // SAFETY: every pointer in attr comes from a live slice borrowed for this call with its
    // exact length, so the kernel reads at most data_size_in/ctx_size_in bytes and writes at
    // most data_size_out/ctx_size_out bytes (it clamps and returns ENOSPC when the output is
    // larger), plus ctx_size_in bytes into ctx_in for syscall programs, which is why ctx_in
    // is borrowed mutably. Zero-length buffers are passed as NULL with size 0, so the kernel
    // never writes through a pointer without a size. The fd is borrowed, hence open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_TEST_RUN as libc::c_long,
            &mut attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    let err = (rc < 0).then(io::Error::last_os_error);
    // SAFETY: the union was written through its `test` member above and by the kernel.
    let test = unsafe { attr.test };
    let out = TestRunOut {
        retval: test.retval,
        duration_ns: test.duration,
        data_size_out: test.data_size_out,
        ctx_size_out: test.ctx_size_out,
    };
    (out, err)
}

/// Loads the instructions of a `SEC("syscall")` program (sleepable, as the kernel requires),
/// returning its fd, or the error with the verifier log. The first attempt asks for no log:
/// a log of a long (unrolled) program can outgrow any buffer, and the kernel then fails the
/// load with ENOSPC although the program verifies. Only a refused program is loaded again
/// with the log on, to explain why.
pub(crate) fn load_syscall_prog(
    name: &str,
    insns: &[u8],
    license: &CStr,
) -> Result<OwnedFd, String> {
    const LOG_SIZE: usize = 16 << 20;
    let rc = match prog_load_syscall(name, insns, license, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_SIZE];
    match prog_load_syscall(name, insns, license, Some(&mut log)) {
        Ok(fd) => Ok(fd),
        Err(err) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(format!("{rc}\nverifier log ({err}):\n{}", text.trim_end()))
        }
    }
}

fn prog_load_syscall(
    name: &str,
    insns: &[u8],
    license: &CStr,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, io::Error> {
    let mut prog_name = [0 as libc::c_char; 16];
    for (dst, &b) in prog_name.iter_mut().zip(name.as_bytes().iter().take(15)) {
        *dst = b as libc::c_char;
    }
    // SAFETY: as above, all-zero is a valid bpf_attr and the required value of unused fields.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the load member of a zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_SYSCALL as u32;
    load.insns = insns.as_ptr() as u64;
    load.insn_cnt = (insns.len() / 8) as u32;
    load.license = license.as_ptr() as u64;
    load.prog_flags = aya_obj::generated::BPF_F_SLEEPABLE;
    load.prog_name = prog_name;
    if let Some(log) = log {
        load.log_level = 1;
        load.log_buf = log.as_mut_ptr() as u64;
        load.log_size = log.len() as u32;
    }
    // SAFETY: insns, license and log are live for the call; the kernel reads insn_cnt * 8
    // bytes of insns, a NUL-terminated license, and writes at most log_size bytes of log.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_long,
            &mut attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}
