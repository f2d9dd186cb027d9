//! The `bpf(2)` calls aya 0.14 does not make the way a test harness needs.
//!
//! aya 0.14 has `TestRun`, but on failure it drops the attribute block, so the size the
//! kernel wrote back with ENOSPC (`data_size_out`) is lost, and it cannot pass a CPU for
//! packet programs. Its program loader knows only its own section names and types (no `tc`,
//! `lwt_*`, `syscall`, ...) and creates global-data maps without BTF, so tracekit loads
//! programs, maps and BTF itself (see `loader`). Every `bpf(2)` call of the crate is here.

use aya_obj::generated::{bpf_attr, bpf_cmd};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A `bpf(2)` call that returns a new file descriptor on success.
///
/// # Safety
/// Every pointer in `attr` must be valid for the command: readable for the sizes it names, and
/// writable where the kernel writes (log buffers), for the whole call.
unsafe fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: the caller vouches for the pointers in attr; attr itself is a live, full-size
    // bpf_attr.
    let rc = unsafe { bpf(cmd, attr) }?;
    // SAFETY: these commands return a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// A raw `bpf(2)` call.
///
/// # Safety
/// As for [`bpf_fd`].
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: attr is a live bpf_attr of the size passed; the caller vouches for the pointers
    // inside it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An all-zero `bpf_attr`: what the kernel requires in every field a command does not use.
fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integer fields; all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// A kernel object name (programs, maps): at most 15 bytes and a NUL.
fn object_name(name: &str) -> [libc::c_char; 16] {
    let mut out = [0 as libc::c_char; 16];
    let usable = name
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
        .take(15);
    for (dst, b) in out.iter_mut().zip(usable) {
        *dst = b as libc::c_char;
    }
    out
}

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
    /// Frames per batch in XDP live-frames mode (0: the kernel's default).
    pub batch_size: u32,
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
    let mut attr = zeroed_attr();
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
    attr.test.batch_size = io.batch_size;
    // SAFETY: every pointer in attr comes from a live slice borrowed for this call with its
    // exact length, so the kernel reads at most data_size_in/ctx_size_in bytes and writes at
    // most data_size_out/ctx_size_out bytes (it clamps and returns ENOSPC when the output is
    // larger), plus ctx_size_in bytes into ctx_in for syscall programs, which is why ctx_in
    // is borrowed mutably. Zero-length buffers are passed as NULL with size 0, so the kernel
    // never writes through a pointer without a size. The fd is borrowed, hence open.
    let err = unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }.err();
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

/// What `BPF_PROG_LOAD` needs of one program.
pub(crate) struct ProgLoad<'a> {
    pub name: &'a str,
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub attach_btf_id: u32,
    pub flags: u32,
    /// Raw instructions, 8 bytes each.
    pub insns: &'a [u8],
    pub license: &'a CStr,
    pub btf: Option<BorrowedFd<'a>>,
    /// `bpf_func_info` records (8 bytes each) and `bpf_line_info` records (16 bytes each).
    pub func_info: &'a [u8],
    pub line_info: &'a [u8],
}

/// The verifier log of a refused program, or why there is none.
pub(crate) struct Refusal {
    pub error: io::Error,
    pub log: String,
}

/// Loads a program (the verifier's log of a refusal: up to 16 MiB).
pub(crate) fn prog_load(prog: &ProgLoad<'_>) -> Result<OwnedFd, Refusal> {
    load_with_log(16 << 20, |log| prog_load_once(prog, log))
}

/// Runs a load once without a log: a log of a long (unrolled) program can outgrow any buffer,
/// and the kernel then fails the load with ENOSPC although the program verifies. Only a
/// refusal is loaded again with a log of `log_size` bytes, to explain why.
fn load_with_log(
    log_size: usize,
    load: impl Fn(Option<&mut [u8]>) -> io::Result<OwnedFd>,
) -> Result<OwnedFd, Refusal> {
    let error = match load(None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; log_size];
    if let Ok(fd) = load(Some(&mut log)) {
        return Ok(fd);
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end]).trim_end().to_owned();
    Err(Refusal { error, log })
}

fn prog_load_once(prog: &ProgLoad<'_>, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the load member of a zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = prog.prog_type;
    load.expected_attach_type = prog.expected_attach_type;
    load.attach_btf_id = prog.attach_btf_id;
    load.prog_flags = prog.flags;
    load.insns = prog.insns.as_ptr() as u64;
    load.insn_cnt = (prog.insns.len() / 8) as u32;
    load.license = prog.license.as_ptr() as u64;
    load.prog_name = object_name(prog.name);
    if let Some(btf) = prog.btf {
        load.prog_btf_fd = btf.as_raw_fd() as u32;
        if !prog.func_info.is_empty() {
            load.func_info_rec_size = 8;
            load.func_info = prog.func_info.as_ptr() as u64;
            load.func_info_cnt = (prog.func_info.len() / 8) as u32;
        }
        if !prog.line_info.is_empty() {
            load.line_info_rec_size = 16;
            load.line_info = prog.line_info.as_ptr() as u64;
            load.line_info_cnt = (prog.line_info.len() / 16) as u32;
        }
    }
    if let Some(log) = log {
        load.log_level = 1;
        load.log_buf = log.as_mut_ptr() as u64;
        load.log_size = log.len() as u32;
    }
    // SAFETY: insns, license, func_info, line_info and log are borrowed for the call; the
    // kernel reads insn_cnt * 8 bytes of insns, the NUL-terminated license, cnt * rec_size
    // bytes of each info array, and writes at most log_size bytes of log.
    unsafe { bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr) }
}

/// What `BPF_MAP_CREATE` needs of one map.
pub(crate) struct MapCreate<'a> {
    pub name: &'a str,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub map_extra: u64,
    pub inner_map: Option<BorrowedFd<'a>>,
    /// The object's BTF with the key and value type ids (0 for none).
    pub btf: Option<(BorrowedFd<'a>, u32, u32)>,
}

/// Creates a map.
pub(crate) fn map_create(map: &MapCreate<'_>) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the map-create member of a zeroed union.
    let create = unsafe { &mut attr.__bindgen_anon_1 };
    create.map_type = map.map_type;
    create.key_size = map.key_size;
    create.value_size = map.value_size;
    create.max_entries = map.max_entries;
    create.map_flags = map.flags;
    create.map_extra = map.map_extra;
    create.map_name = object_name(map.name);
    if let Some(inner) = map.inner_map {
        create.inner_map_fd = inner.as_raw_fd() as u32;
    }
    if let Some((btf, key, value)) = map.btf {
        create.btf_fd = btf.as_raw_fd() as u32;
        create.btf_key_type_id = key;
        create.btf_value_type_id = value;
    }
    // SAFETY: the attribute holds no pointers; the fds are borrowed, hence open.
    unsafe { bpf_fd(bpf_cmd::BPF_MAP_CREATE, &mut attr) }
}

/// Writes `value` at key 0 of an array map (a global-data section's initial contents).
pub(crate) fn map_set_first(map: BorrowedFd<'_>, value: &[u8]) -> io::Result<()> {
    let key = 0u32;
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the map-element member of a zeroed union.
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map.as_raw_fd() as u32;
    elem.key = &key as *const u32 as u64;
    elem.__bindgen_anon_1.value = value.as_ptr() as u64;
    // SAFETY: key and value are live for the call; the kernel reads key_size (4) bytes of key
    // and value_size bytes of value, which is value.len(): the map was created with it.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// Freezes a map: programs may still read it, nobody may write it (`.rodata`).
pub(crate) fn map_freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
    // SAFETY: the attribute holds no pointers; the fd is borrowed, hence open.
    unsafe { bpf(bpf_cmd::BPF_MAP_FREEZE, &mut attr) }.map(drop)
}

/// Loads an object's BTF (the kernel's BTF log of a refusal: up to 1 MiB).
pub(crate) fn btf_load(btf: &[u8]) -> Result<OwnedFd, Refusal> {
    load_with_log(1 << 20, |log| btf_load_once(btf, log))
}

fn btf_load_once(btf: &[u8], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the BTF-load member of a zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_7 };
    load.btf = btf.as_ptr() as u64;
    load.btf_size = btf.len() as u32;
    if let Some(log) = log {
        load.btf_log_level = 1;
        load.btf_log_buf = log.as_mut_ptr() as u64;
        load.btf_log_size = log.len() as u32;
    }
    // SAFETY: btf and log are borrowed for the call; the kernel reads btf_size bytes and
    // writes at most btf_log_size bytes of log.
    unsafe { bpf_fd(bpf_cmd::BPF_BTF_LOAD, &mut attr) }
}

/// The key after `key` (the first key for `None`) into `next`; `false` at the end of the map.
pub(crate) fn map_next_key(
    map: BorrowedFd<'_>,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> io::Result<bool> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the map-element member of a zeroed union.
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map.as_raw_fd() as u32;
    elem.key = key.map_or(0, |k| k.as_ptr() as u64);
    elem.__bindgen_anon_1.next_key = next.as_mut_ptr() as u64;
    // SAFETY: key (key_size bytes, or NULL for the first key) and next (key_size bytes) are
    // live for the call; the caller sized both to the map's key size.
    match unsafe { bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The value at `key` into `value`; `false` when the key is not there.
pub(crate) fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the map-element member of a zeroed union.
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map.as_raw_fd() as u32;
    elem.key = key.as_ptr() as u64;
    elem.__bindgen_anon_1.value = value.as_mut_ptr() as u64;
    // SAFETY: key and value are live for the call and sized by the caller to the map's key
    // size and user-space value size (per-CPU maps: one slot per possible CPU).
    match unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates or replaces the entry at `key` (`BPF_ANY`).
pub(crate) fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the map-element member of a zeroed union.
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map.as_raw_fd() as u32;
    elem.key = key.as_ptr() as u64;
    elem.__bindgen_anon_1.value = value.as_ptr() as u64;
    // SAFETY: key and value are live for the call and sized by the caller to the map's sizes;
    // the kernel only reads them.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}
