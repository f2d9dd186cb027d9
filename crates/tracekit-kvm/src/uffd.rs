//! userfaultfd page-fault handlers: faults on the test memory are served from handler threads
//! (one userfaultfd per vCPU slice, or one shared), each uffd read by one or more reader threads,
//! stopped through a pipe, as in the seed's demand_paging_test. Missing pages are filled with
//! UFFDIO_COPY; with minor faults (shared memory whose page cache was filled through a second
//! mapping) the existing page is mapped with UFFDIO_CONTINUE.
//!
//! Written on the raw syscall and ioctls (via nix's ioctl macros) rather than the
//! `userfaultfd` crate: its `userfaultfd-sys` build script always runs bindgen, which needs
//! libclang and kernel headers at build time, and tracekit must build with cargo alone.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::memory::{Backing, HostMemory};
use crate::runner::pin_current_thread;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracekit_core::stats::{LatencyStats, Log2Histogram};

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
struct UffdioContinue {
    range: UffdioRange,
    mode: u64,
    mapped: i64,
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
const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;
const UFFD_FEATURE_MINOR_HUGETLBFS: u64 = 1 << 9;
const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// sizeof(struct uffd_msg).
const MSG_SIZE: usize = 32;
/// Offset of `arg.pagefault.address` in struct uffd_msg.
const MSG_ADDRESS: usize = 16;

mod sys {
    use super::{UffdioApi, UffdioContinue, UffdioCopy, UffdioRegister};
    nix::ioctl_readwrite!(
    /// UFFDIO_API.
    uffdio_api, 0xaa, 0x3f, UffdioApi);
    nix::ioctl_readwrite!(
    /// UFFDIO_REGISTER.
    uffdio_register, 0xaa, 0x00, UffdioRegister);
    nix::ioctl_readwrite!(
    /// UFFDIO_COPY.
    uffdio_copy, 0xaa, 0x03, UffdioCopy);
    nix::ioctl_readwrite!(
    /// UFFDIO_CONTINUE.
    uffdio_continue, 0xaa, 0x07, UffdioContinue);
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

/// Which faults userfaultfd reports and how they are served (the selftest's `-u MISSING|MINOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Missing pages, filled with UFFDIO_COPY of a pattern page.
    Missing,
    /// Minor faults on shared memory whose pages are already in the page cache (filled with the
    /// pattern through a second mapping before the run), mapped with UFFDIO_CONTINUE.
    Minor,
}

/// How the userfaultfd handlers run (the selftest's `-u`, `-a`, `-r` and `-d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UffdOptions {
    /// One uffd per vCPU or one for all.
    pub mode: HandlerMode,
    /// Missing or minor faults.
    pub kind: FaultKind,
    /// Reader threads per uffd (at least 1).
    pub readers: usize,
    /// Sleep this long in the handler before serving each fault (simulated paging overhead).
    pub delay: Duration,
}

impl UffdOptions {
    /// Missing-page faults, one reader per uffd, no delay.
    pub fn new(mode: HandlerMode) -> Self {
        UffdOptions {
            mode,
            kind: FaultKind::Missing,
            readers: 1,
            delay: Duration::ZERO,
        }
    }
}

/// What the handlers did, merged over all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UffdStats {
    /// Handler mode.
    pub mode: HandlerMode,
    /// Missing or minor faults.
    pub kind: FaultKind,
    /// Number of userfaultfds.
    pub uffds: usize,
    /// Number of handler (reader) threads over all uffds.
    pub handlers: usize,
    /// Reader threads per uffd.
    pub readers_per_uffd: usize,
    /// The handler's delay before serving each fault, in microseconds.
    pub delay_us: u64,
    /// Fault messages read (every one is served: resolved or found already present).
    pub faults: u64,
    /// Successful UFFDIO_COPY (missing) or UFFDIO_CONTINUE (minor) calls: pages resolved.
    pub copies: u64,
    /// Faults that found the page already resolved (EEXIST), e.g. two vCPUs or two readers
    /// on one page.
    pub already_present: u64,
    /// Mean time of one resolving ioctl (UFFDIO_COPY or UFFDIO_CONTINUE), in nanoseconds.
    pub copy_mean_ns: f64,
    /// Longest resolving ioctl, in nanoseconds.
    pub copy_max_ns: u64,
    /// Handler-side latency of every fault: from the handler reading its message to the
    /// resolving ioctl returning (the delay included), in nanoseconds, log2 buckets (bucket
    /// `k` ≥ 1 holds `[2^(k-1), 2^k)`); exact counts, adding up to `faults`.
    pub fault_latency_ns: Log2Histogram,
}

/// Opens a userfaultfd (non-blocking, kernel faults included, since KVM faults on guest
/// memory from kernel mode) and does the API handshake.
fn open(features: u64) -> Result<OwnedFd> {
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
        features,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes exactly a struct uffdio_api.
    unsafe { sys::uffdio_api(fd.as_raw_fd(), &mut api) }.map_err(uffd_err(
        "UFFDIO_API",
        "; this kernel lacks the userfaultfd feature asked for (minor faults need 5.13+)",
    ))?;
    Ok(fd)
}

fn register(fd: &OwnedFd, start: u64, len: u64, kind: FaultKind) -> Result<()> {
    let mode = match kind {
        FaultKind::Missing => UFFDIO_REGISTER_MODE_MISSING,
        FaultKind::Minor => UFFDIO_REGISTER_MODE_MINOR,
    };
    let mut reg = UffdioRegister {
        range: UffdioRange { start, len },
        mode,
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

/// Handler threads serving faults on the test memory until stopped.
pub struct UffdHandlers {
    options: UffdOptions,
    uffds: usize,
    /// Write ends of the stop pipes, one per uffd (all its readers poll the read end).
    stops: Vec<OwnedFd>,
    threads: Vec<JoinHandle<Result<HandlerStats>>>,
}

#[derive(Default)]
struct HandlerStats {
    faults: u64,
    copies: u64,
    already_present: u64,
    copy_ns: LatencyStats,
    latency: Log2Histogram,
}

impl HandlerStats {
    fn merge(&mut self, other: &HandlerStats) {
        self.faults += other.faults;
        self.copies += other.copies;
        self.already_present += other.already_present;
        self.copy_ns.merge(&other.copy_ns);
        self.latency.add_buckets(&other.latency.buckets);
    }
}

/// What a reader thread needs: its uffd, the stop pipe, and how to serve a fault.
struct Reader {
    uffd: Arc<OwnedFd>,
    stop: Arc<OwnedFd>,
    page_size: u64,
    kind: FaultKind,
    delay: Duration,
}

impl UffdHandlers {
    /// Registers `mem` (laid out as `layout`) and starts the handlers; with `cpus`, the readers
    /// of vCPU `i`'s uffd are pinned to `cpus[i]` (the shared uffd's to `cpus[0]`). For minor
    /// faults, every page is first filled with [`COPY_PATTERN`] through a second mapping.
    pub fn start(
        mem: &HostMemory,
        layout: &Layout,
        options: &UffdOptions,
        cpus: Option<&[usize]>,
    ) -> Result<Self> {
        let features = check_kind(mem.backing(), options)?;
        if options.kind == FaultKind::Minor {
            fill_page_cache(mem)?;
        }
        let base = mem.as_ptr() as u64;
        // Overlapping vCPUs share one range, so one uffd serves it (the selftest's -o implies -a).
        let mode = if layout.overlap {
            HandlerMode::Shared
        } else {
            options.mode
        };
        let slices: Vec<(u64, u64)> = match mode {
            HandlerMode::PerVcpu => (0..layout.vcpus)
                .map(|v| (base + layout.offset(v, 0), layout.bytes_visited_per_vcpu()))
                .collect(),
            HandlerMode::Shared => vec![(base, mem.len() as u64)],
        };
        let mut handlers = UffdHandlers {
            options: UffdOptions { mode, ..*options },
            uffds: slices.len(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for (i, (start, len)) in slices.into_iter().enumerate() {
            let uffd = Arc::new(open(features)?);
            register(&uffd, start, len, options.kind)?;
            let (stop_rx, stop_tx) = nix::unistd::pipe().map_err(uffd_err("pipe", ""))?;
            handlers.stops.push(stop_tx);
            let cpu = cpus.map(|c| c[i]);
            handlers.spawn_readers(i, &uffd, &Arc::new(stop_rx), layout.host_page_size, cpu)?;
        }
        Ok(handlers)
    }

    /// Starts the reader threads of uffd `i`, all polling `uffd` and its `stop` pipe.
    fn spawn_readers(
        &mut self,
        i: usize,
        uffd: &Arc<OwnedFd>,
        stop: &Arc<OwnedFd>,
        page_size: u64,
        cpu: Option<usize>,
    ) -> Result<()> {
        for r in 0..self.options.readers.max(1) {
            let reader = Reader {
                uffd: uffd.clone(),
                stop: stop.clone(),
                page_size,
                kind: self.options.kind,
                delay: self.options.delay,
            };
            let thread = std::thread::Builder::new()
                .name(format!("uffd{i}.{r}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_current_thread(cpu)?;
                    }
                    serve(&reader)
                })
                .map_err(Error::Thread)?;
            self.threads.push(thread);
        }
        Ok(())
    }

    /// Stops the handlers and returns what they did.
    pub fn stop(mut self) -> Result<UffdStats> {
        let handlers = self.threads.len();
        let mut total = HandlerStats::default();
        for stats in self.stop_all() {
            total.merge(&stats?);
        }
        let o = self.options;
        Ok(UffdStats {
            mode: o.mode,
            kind: o.kind,
            uffds: self.uffds,
            handlers,
            readers_per_uffd: o.readers.max(1),
            delay_us: o.delay.as_micros() as u64,
            faults: total.faults,
            copies: total.copies,
            already_present: total.already_present,
            copy_mean_ns: total.copy_ns.mean(),
            copy_max_ns: total.copy_ns.max,
            fault_latency_ns: total.latency,
        })
    }

    fn stop_all(&mut self) -> Vec<Result<HandlerStats>> {
        for stop_tx in &self.stops {
            let _ = nix::unistd::write(stop_tx, b"x");
        }
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(Error::Invalid("a userfaultfd handler panicked".into()))
                })
            })
            .collect()
    }
}

impl Drop for UffdHandlers {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}

/// Refuses what userfaultfd cannot do: minor faults exist only for shared memory (shmem or
/// hugetlbfs), whose page cache can hold a page the faulting mapping has not mapped yet.
/// Returns the UFFDIO_API features to ask for.
fn check_kind(backing: Backing, options: &UffdOptions) -> Result<u64> {
    if options.readers == 0 {
        return Err(Error::Invalid(
            "0 reader threads per userfaultfd; use at least 1".into(),
        ));
    }
    match (options.kind, backing) {
        (FaultKind::Missing, _) => Ok(0),
        (FaultKind::Minor, Backing::Shared) => Ok(UFFD_FEATURE_MINOR_SHMEM),
        (FaultKind::Minor, Backing::SharedHugetlb) => Ok(UFFD_FEATURE_MINOR_HUGETLBFS),
        (FaultKind::Minor, other) => Err(Error::Invalid(format!(
            "userfaultfd minor faults need shared memory (-s shared or shared-hugetlb), not {}: \
             private memory has no page cache for UFFDIO_CONTINUE to map",
            other.name()
        ))),
    }
}

/// Puts every page of shared memory in the page cache, holding [`COPY_PATTERN`], by writing it
/// through a second mapping, so that the test mapping's first touch of each page is a minor
/// fault (the selftest's prefault_mem through its alias).
fn fill_page_cache(mem: &HostMemory) -> Result<()> {
    let alias = mem.alias()?;
    for offset in (0..alias.len()).step_by(8) {
        alias.write_u64(offset, COPY_PATTERN);
    }
    Ok(())
}

/// The reader loop: wait for a fault or the stop pipe; serve each fault (after the delay) with
/// one UFFDIO_COPY of the pattern page or one UFFDIO_CONTINUE.
fn serve(r: &Reader) -> Result<HandlerStats> {
    let source = vec![COPY_PATTERN; (r.page_size / 8) as usize];
    let mut stats = HandlerStats::default();
    let mut buf = [0u8; MSG_SIZE * 64];
    loop {
        let mut fds = [
            PollFd::new(r.uffd.as_fd(), PollFlags::POLLIN),
            PollFd::new(r.stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            other => other.map_err(uffd_err("poll", ""))?,
        };
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(stats);
        }
        // Several readers may wake for one message; the losers get EAGAIN.
        let n = match nix::unistd::read(r.uffd.as_fd(), &mut buf) {
            Err(nix::Error::EAGAIN) => continue,
            other => other.map_err(uffd_err("read", ""))?,
        };
        let read_at = Instant::now();
        for msg in buf[..n].chunks_exact(MSG_SIZE) {
            if msg[0] != UFFD_EVENT_PAGEFAULT {
                return Err(uffd_err("read", ": unexpected event")(nix::Error::EPROTO));
            }
            let address = u64::from_ne_bytes(
                msg[MSG_ADDRESS..MSG_ADDRESS + 8]
                    .try_into()
                    .expect("8 bytes"),
            );
            if !r.delay.is_zero() {
                std::thread::sleep(r.delay);
            }
            let page = address & !(r.page_size - 1);
            resolve(r, page, &source, &mut stats)?;
            stats.faults += 1;
            stats.latency.record(read_at.elapsed().as_nanos() as u64);
        }
    }
}

/// Serves one fault at `page`: UFFDIO_COPY of `source` or UFFDIO_CONTINUE.
fn resolve(r: &Reader, page: u64, source: &[u64], stats: &mut HandlerStats) -> Result<()> {
    let start = Instant::now();
    let (what, result) = match r.kind {
        FaultKind::Missing => ("UFFDIO_COPY", copy_page(&r.uffd, page, source, r.page_size)),
        FaultKind::Minor => ("UFFDIO_CONTINUE", continue_page(&r.uffd, page, r.page_size)),
    };
    match result {
        Ok(()) => {
            stats.copy_ns.record(start.elapsed().as_nanos() as u64);
            stats.copies += 1;
            Ok(())
        }
        Err(nix::Error::EEXIST) => {
            stats.already_present += 1;
            Ok(())
        }
        Err(e) => Err(uffd_err(what, "")(e)),
    }
}

fn copy_page(uffd: &OwnedFd, dst: u64, source: &[u64], len: u64) -> nix::Result<()> {
    let mut copy = UffdioCopy {
        dst,
        src: source.as_ptr() as u64,
        len,
        mode: 0,
        copy: 0,
    };
    // SAFETY: UFFDIO_COPY reads `len` bytes from `source` (exactly `len` long) and writes them
    // into the registered, still-missing page at `dst`; it never touches our Rust objects.
    unsafe { sys::uffdio_copy(uffd.as_raw_fd(), &mut copy) }.map(drop)
}

fn continue_page(uffd: &OwnedFd, start: u64, len: u64) -> nix::Result<()> {
    let mut cont = UffdioContinue {
        range: UffdioRange { start, len },
        mode: 0,
        mapped: 0,
    };
    // SAFETY: UFFDIO_CONTINUE reads and writes only the struct; it maps the page-cache page
    // already behind `start` into the registered range, which our HostMemory owns.
    unsafe { sys::uffdio_continue(uffd.as_raw_fd(), &mut cont) }.map(drop)
}
