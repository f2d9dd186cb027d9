//! userfaultfd page-fault handlers: missing pages of the test memory are filled with
//! UFFDIO_COPY from handler threads (one per vCPU, or one shared), stopped through a pipe,
//! as in the seed's demand_paging_test.
//!
//! Written on the raw syscall and ioctls (via nix's ioctl macros) rather than the
//! `userfaultfd` crate: its `userfaultfd-sys` build script always runs bindgen, which needs
//! libclang and kernel headers at build time, and tracekit must build with cargo alone.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::memory::HostMemory;
use crate::runner::pin_current_thread;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::Instant;
use tracekit_core::stats::LatencyStats;

/// Every u64 of the UFFDIO_COPY source page holds this, so a verified page shows both that the
/// handler's copy arrived (its tail) and that the guest's write landed after it (its head).
pub const COPY_PATTERN: u64 = 0x5eed_f00d_5eed_f00d;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

const UFFD_API: u64 = 0xaa;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// sizeof(struct uffd_msg).
const MSG_SIZE: usize = 32;
/// Offset of `arg.pagefault.address` in struct uffd_msg.
const MSG_ADDRESS: usize = 16;

mod sys {
    use super::{UffdioApi, UffdioCopy, UffdioRegister};
    nix::ioctl_readwrite!(
    /// UFFDIO_API.
    uffdio_api, 0xaa, 0x3f, UffdioApi);
    nix::ioctl_readwrite!(
    /// UFFDIO_REGISTER.
    uffdio_register, 0xaa, 0x00, UffdioRegister);
    nix::ioctl_readwrite!(
    /// UFFDIO_COPY.
    uffdio_copy, 0xaa, 0x03, UffdioCopy);
}

fn uffd_err(what: &'static str, hint: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |errno| Error::Uffd { what, errno, hint }
}

/// Who serves the faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandlerMode {
    /// One userfaultfd and one handler thread per vCPU slice (the seed's layout).
    PerVcpu,
    /// One userfaultfd over all the test memory and a single handler thread.
    Shared,
}

/// What the handlers did, merged over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UffdStats {
    /// Handler mode.
    pub mode: HandlerMode,
    /// Number of handler threads.
    pub handlers: usize,
    /// Successful UFFDIO_COPY calls (pages filled).
    pub copies: u64,
    /// Faults that found the page already filled (EEXIST), e.g. two vCPUs on one huge page.
    pub already_present: u64,
    /// Mean time of one UFFDIO_COPY, in nanoseconds.
    pub copy_mean_ns: f64,
    /// Longest UFFDIO_COPY, in nanoseconds.
    pub copy_max_ns: u64,
}

/// Opens a userfaultfd (non-blocking, kernel faults included, since KVM faults on guest
/// memory from kernel mode) and does the API handshake.
fn open() -> Result<OwnedFd> {
    let hint = "; run as root, or allow it with `sysctl vm.unprivileged_userfaultfd=1`";
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: userfaultfd(2) takes only flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if fd < 0 {
        return Err(uffd_err("open (userfaultfd(2))", hint)(nix::Error::last()));
    }
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes exactly a struct uffdio_api.
    unsafe { sys::uffdio_api(fd.as_raw_fd(), &mut api) }.map_err(uffd_err("UFFDIO_API", ""))?;
    Ok(fd)
}

fn register(fd: &OwnedFd, start: u64, len: u64) -> Result<()> {
    let mut reg = UffdioRegister {
        range: UffdioRange { start, len },
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER reads and writes exactly a struct uffdio_register; the range is a
    // live mapping owned by the caller for as long as the fd is in use.
    unsafe { sys::uffdio_register(fd.as_raw_fd(), &mut reg) }.map_err(uffd_err(
        "UFFDIO_REGISTER",
        "; the backing must be anonymous, shared or hugetlb memory",
    ))?;
    Ok(())
}

/// Handler threads serving missing-page faults on the test memory until stopped.
pub struct UffdHandlers {
    mode: HandlerMode,
    threads: Vec<(OwnedFd, JoinHandle<Result<HandlerStats>>)>,
}

#[derive(Default)]
struct HandlerStats {
    copies: u64,
    already_present: u64,
    copy_ns: LatencyStats,
}

impl UffdHandlers {
    /// Registers `mem` (laid out as `layout`) and starts the handlers; with `cpus`, the handler
    /// of vCPU `i` is pinned to `cpus[i]` (the shared handler to `cpus[0]`).
    pub fn start(
        mem: &HostMemory,
        layout: &Layout,
        mode: HandlerMode,
        cpus: Option<&[usize]>,
    ) -> Result<Self> {
        let base = mem.as_ptr() as u64;
        let slices: Vec<(u64, u64)> = match mode {
            HandlerMode::PerVcpu => (0..layout.vcpus)
                .map(|v| (base + layout.offset(v, 0), layout.bytes_per_vcpu))
                .collect(),
            HandlerMode::Shared => vec![(base, layout.total_bytes())],
        };
        let mut handlers = UffdHandlers {
            mode,
            threads: Vec::new(),
        };
        for (i, (start, len)) in slices.into_iter().enumerate() {
            let uffd = open()?;
            register(&uffd, start, len)?;
            let (stop_rx, stop_tx) = nix::unistd::pipe().map_err(uffd_err("pipe", ""))?;
            let page_size = layout.host_page_size;
            let cpu = cpus.map(|c| c[i]);
            let thread = std::thread::Builder::new()
                .name(format!("uffd{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_current_thread(cpu)?;
                    }
                    serve(&uffd, &stop_rx, page_size)
                })
                .map_err(Error::Thread)?;
            handlers.threads.push((stop_tx, thread));
        }
        Ok(handlers)
    }

    /// Stops the handlers and returns what they did.
    pub fn stop(mut self) -> Result<UffdStats> {
        let threads = std::mem::take(&mut self.threads);
        let handlers = threads.len();
        let mut total = HandlerStats::default();
        for stats in stop_all(threads) {
            let s = stats?;
            total.copies += s.copies;
            total.already_present += s.already_present;
            total.copy_ns.merge(&s.copy_ns);
        }
        Ok(UffdStats {
            mode: self.mode,
            handlers,
            copies: total.copies,
            already_present: total.already_present,
            copy_mean_ns: total.copy_ns.mean(),
            copy_max_ns: total.copy_ns.max,
        })
    }
}

impl Drop for UffdHandlers {
    fn drop(&mut self) {
        let _ = stop_all(std::mem::take(&mut self.threads));
    }
}

fn stop_all(
    threads: Vec<(OwnedFd, JoinHandle<Result<HandlerStats>>)>,
) -> Vec<Result<HandlerStats>> {
    for (stop_tx, _) in &threads {
        let _ = nix::unistd::write(stop_tx, b"x");
    }
    threads
        .into_iter()
        .map(|(_, t)| {
            t.join()
                .unwrap_or_else(|_| Err(Error::Invalid("a userfaultfd handler panicked".into())))
        })
        .collect()
}

/// The handler loop: wait for a fault or the stop pipe; fill each faulting page with one
/// UFFDIO_COPY of the pattern page.
fn serve(uffd: &OwnedFd, stop: &OwnedFd, page_size: u64) -> Result<HandlerStats> {
    let source = vec![COPY_PATTERN; (page_size / 8) as usize];
    let mut stats = HandlerStats::default();
    let mut buf = [0u8; MSG_SIZE * 64];
    loop {
        let mut fds = [
            PollFd::new(uffd.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            other => other.map_err(uffd_err("poll", ""))?,
        };
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(stats);
        }
        let n = match nix::unistd::read(uffd, &mut buf) {
            Err(nix::Error::EAGAIN) => continue,
            other => other.map_err(uffd_err("read", ""))?,
        };
        for msg in buf[..n].chunks_exact(MSG_SIZE) {
            if msg[0] != UFFD_EVENT_PAGEFAULT {
                return Err(uffd_err("read", ": unexpected event")(nix::Error::EPROTO));
            }
            let address = u64::from_ne_bytes(
                msg[MSG_ADDRESS..MSG_ADDRESS + 8]
                    .try_into()
                    .expect("8 bytes"),
            );
            copy_page(
                uffd,
                address & !(page_size - 1),
                &source,
                page_size,
                &mut stats,
            )?;
        }
    }
}

fn copy_page(
    uffd: &OwnedFd,
    dst: u64,
    source: &[u64],
    len: u64,
    stats: &mut HandlerStats,
) -> Result<()> {
    let mut copy = UffdioCopy {
        dst,
        src: source.as_ptr() as u64,
        len,
        mode: 0,
        copy: 0,
    };
    let start = Instant::now();
    // SAFETY: UFFDIO_COPY reads `len` bytes from `source` (exactly `len` long) and writes them
    // into the registered, still-missing page at `dst`; it never touches our Rust objects.
    let result = unsafe { sys::uffdio_copy(uffd.as_raw_fd(), &mut copy) };
    match result {
        Ok(_) => {
            stats.copy_ns.record(start.elapsed().as_nanos() as u64);
            stats.copies += 1;
            Ok(())
        }
        Err(nix::Error::EEXIST) => {
            stats.already_present += 1;
            Ok(())
        }
        Err(e) => Err(uffd_err("UFFDIO_COPY", "")(e)),
    }
}
