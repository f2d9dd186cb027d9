//! The shared area: a memfd mapped into tracekit and into the target, holding per-point
//! counters and the return probes' table of hijacked return addresses.
//!
//! Layout (all little-endian `u64`s, updated in the target with `lock`ed instructions only):
//! - header (one page): [`MAGIC`], number of points, the TSC→ns multiplier and shift;
//! - per point `i`, at [`point_offset`]`(i)` ([`POINT_STRIDE`] bytes, so that points never
//!   share a cache line): entry hits, returns, missed, latency sum, max, `!min`, sum of
//!   squares (low, high), then a 64-bucket log2 histogram of latencies in ns;
//! - the return stacks at [`table_offset`]: [`THREADS`] + [`PROBES`] per-thread areas of
//!   [`THREAD_SIZE`] bytes, found by hashing the thread's FS base (its TLS block, read with
//!   `rdfsbase`: no syscall): key (FS base + 1, 0 = free, claimed with `lock cmpxchg`), then
//!   slots of [`FRAME_SIZE`] bytes from offset [`FRAME_SIZE`] on, each holding one pending
//!   return: key (the stack pointer at entry, where the return address is; 0 = free), real
//!   return address, entry TSC, the return trampoline written in its place. A frame's slot is
//!   searched from `1 + (key >> 4) % SLOT_WINDOW` over [`SLOT_WINDOW`] slots. Only the owning
//!   thread (and its signal handlers) touches its slots, so they need no lock.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use tracekit_core::stats::{LatencyStats, Log2Histogram};

/// "TKJUMP01", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TKJUMP01");
/// Bytes of counters per point.
pub const POINT_STRIDE: u64 = 1024;
/// Entry hits.
pub const ENTRY: u64 = 0;
/// Returns (latencies recorded).
pub const RETURNS: u64 = 8;
/// Return probes missed (the table had no free entry near the key, or the frame was
/// already hijacked).
pub const MISSED: u64 = 16;
/// Sum of latencies, ns.
pub const LAT_SUM: u64 = 24;
/// Largest latency, ns.
pub const LAT_MAX: u64 = 32;
/// Bitwise complement of the smallest latency (so that 0 means "none yet" and the update
/// is a max, like [`LAT_MAX`]).
pub const LAT_MIN_INV: u64 = 40;
/// Sum of squared latencies, low 64 bits.
pub const SQ_LO: u64 = 48;
/// Sum of squared latencies, high 64 bits.
pub const SQ_HI: u64 = 56;
/// The log2 histogram: 64 buckets as [`Log2Histogram::bucket_of`] numbers them.
pub const HIST: u64 = 64;
/// Per-thread return stacks addressed by the hash.
pub const THREADS: u64 = 1024;
/// Bits of the hash (log2 of [`THREADS`]).
pub const THREAD_BITS: u32 = 10;
/// Stacks probed from the hashed one (the table has that many more at its end).
pub const PROBES: u64 = 8;
/// Bytes per thread: a header and `2 * SLOT_WINDOW - 1` slots.
pub const THREAD_SIZE: u64 = 4096;
/// Bytes per slot (and of the thread's header before the first one).
pub const FRAME_SIZE: u64 = 32;
/// Slots searched for a frame (a power of two): returns pending at once on a thread beyond
/// what the window around a frame's hash holds count as missed.
pub const SLOT_WINDOW: u64 = 64;
/// Odd multiplier of the stack-pointer hash (fits an `imul`'s signed 32-bit immediate).
pub const HASH_MUL: i32 = 0x2545_f491;

/// Offset of point `i`'s counters.
pub fn point_offset(i: usize) -> u64 {
    4096 + i as u64 * POINT_STRIDE
}

/// Offset of the return stacks for `n` points.
pub fn table_offset(n: usize) -> u64 {
    point_offset(n).div_ceil(4096) * 4096
}

/// Size of the area for `n` points.
pub fn area_len(n: usize) -> u64 {
    (table_offset(n) + (THREADS + PROBES) * THREAD_SIZE).div_ceil(4096) * 4096
}

/// What one point counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointCounts {
    /// Entry hits.
    pub entries: u64,
    /// Returns seen.
    pub returns: u64,
    /// Return probes missed.
    pub missed: u64,
    /// Latencies of the returns, ns.
    pub latency: LatencyStats,
    /// Their histogram.
    pub hist: Log2Histogram,
}

/// tracekit's mapping of one shared area (one memfd).
#[derive(Debug)]
pub struct SharedArea {
    fd: OwnedFd,
    ptr: *mut u8,
    len: u64,
}

impl SharedArea {
    /// Creates a zeroed area for `n` points, with its header written.
    pub fn new(n: usize, tsc_mult: u64, tsc_shift: u64) -> io::Result<Self> {
        // SAFETY: a NUL-terminated name; MFD_CLOEXEC keeps the fd out of programs tracekit
        // spawns (the target opens it by its /proc path instead).
        let fd = unsafe { libc::memfd_create(c"tracekit-jump".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this descriptor, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = area_len(n);
        // SAFETY: plain call on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh shared mapping of the whole file; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let area = SharedArea {
            fd,
            ptr: ptr.cast(),
            len,
        };
        for (off, v) in [(0, MAGIC), (8, n as u64), (16, tsc_mult), (24, tsc_shift)] {
            area.word(off).store(v, Ordering::Relaxed);
        }
        Ok(area)
    }

    /// The memfd.
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes (never: the header is always there).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn word(&self, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "offset {off} outside the area"
        );
        // SAFETY: in bounds and 8-aligned (checked above; the mapping is page-aligned); the
        // mapping lives as long as `self`; the target updates these words only with atomic
        // (locked) instructions, so an atomic view of them is sound.
        unsafe { &*self.ptr.add(off as usize).cast::<AtomicU64>() }
    }

    /// Reads word `off` (live: the target may be updating it).
    pub fn read(&self, off: u64) -> u64 {
        self.word(off).load(Ordering::Relaxed)
    }

    /// Writes word `off`.
    pub fn write(&self, off: u64, v: u64) {
        self.word(off).store(v, Ordering::Relaxed);
    }

    /// A copy of the bytes `off..off + n` (for a forked child's copy of the return stacks).
    pub fn copy_out(&self, off: u64, n: u64) -> Vec<u8> {
        (off..off + n)
            .step_by(8)
            .flat_map(|o| self.read(o).to_le_bytes())
            .collect()
    }

    /// What point `i` counted so far.
    pub fn counts(&self, i: usize) -> PointCounts {
        let b = point_offset(i);
        let returns = self.read(b + RETURNS);
        let min_inv = self.read(b + LAT_MIN_INV);
        let sum_sq = u128::from(self.read(b + SQ_HI)) << 64 | u128::from(self.read(b + SQ_LO));
        let mut hist = Log2Histogram::default();
        let buckets: Vec<u64> = (0..64).map(|k| self.read(b + HIST + 8 * k)).collect();
        hist.add_buckets(&buckets);
        PointCounts {
            entries: self.read(b + ENTRY),
            returns,
            missed: self.read(b + MISSED),
            latency: LatencyStats {
                count: returns,
                total: self.read(b + LAT_SUM),
                min: if returns > 0 { !min_inv } else { 0 },
                max: self.read(b + LAT_MAX),
                sum_sq,
            },
            hist,
        }
    }
}

impl Drop for SharedArea {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back() {
        let a = SharedArea::new(3, 1, 20).unwrap();
        assert_eq!(a.read(0), MAGIC);
        let b = point_offset(2);
        a.write(b + ENTRY, 7);
        a.write(b + RETURNS, 2);
        a.write(b + LAT_SUM, 30);
        a.write(b + LAT_MAX, 20);
        a.write(b + LAT_MIN_INV, !10);
        a.write(b + HIST + 8 * 4, 1);
        a.write(b + HIST + 8 * 5, 1);
        let c = a.counts(2);
        assert_eq!(
            (c.entries, c.returns, c.latency.min, c.latency.max),
            (7, 2, 10, 20)
        );
        assert_eq!(c.hist.total(), 2);
        assert!(area_len(3) >= table_offset(3) + (THREADS + PROBES) * THREAD_SIZE);
    }
}
