//! Host memory that backs the guest's test slot (or the host-only variant's buffer).

use crate::error::{Error, Result};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use serde::Serialize;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The size of a base page on x86-64 hosts and of a guest page in the modes tracekit builds.
pub const PAGE_SIZE: u64 = 4096;
/// The size of a hugetlb page (the default 2 MiB size on x86-64).
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// How the test memory is backed on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backing {
    /// Private anonymous memory (`MAP_PRIVATE | MAP_ANONYMOUS`), the seed's default.
    Anonymous,
    /// Shared memory (`MAP_SHARED | MAP_ANONYMOUS`, i.e. shmem).
    Shared,
    /// Anonymous hugetlb pages of 2 MiB (`MAP_HUGETLB`); needs `vm.nr_hugepages`.
    Hugetlb,
}

impl Backing {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backing::Anonymous => "anonymous",
            Backing::Shared => "shared",
            Backing::Hugetlb => "hugetlb",
        }
    }

    /// The host page size of this backing: the unit of a fault and of a UFFDIO_COPY.
    pub fn page_size(self) -> u64 {
        match self {
            Backing::Hugetlb => HUGE_PAGE_SIZE,
            _ => PAGE_SIZE,
        }
    }

    fn flags(self) -> MapFlags {
        let base = MapFlags::MAP_NORESERVE;
        match self {
            Backing::Anonymous => base | MapFlags::MAP_PRIVATE,
            Backing::Shared => base | MapFlags::MAP_SHARED,
            Backing::Hugetlb => MapFlags::MAP_PRIVATE | MapFlags::MAP_HUGETLB,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Backing::Hugetlb => {
                "; reserve 2 MiB pages first, e.g. `echo 512 > /proc/sys/vm/nr_hugepages`"
            }
            _ => "; check free memory and `ulimit -v`",
        }
    }
}

/// An anonymous host mapping, unmapped on drop. Nothing in it is touched at creation, so
/// every page is still missing when a test starts (which is what demand paging measures).
#[derive(Debug)]
pub struct HostMemory {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: the mapping is plain memory owned by this value; the safe accessors are atomic, and
// raw pointers from `as_ptr` are the caller's responsibility (KVM and userfaultfd use them).
unsafe impl Send for HostMemory {}
// SAFETY: see `Send`; `&HostMemory` hands out only addresses, never references to the bytes.
unsafe impl Sync for HostMemory {}

impl HostMemory {
    /// Maps `len` bytes (a multiple of the backing's page size) of `backing` memory.
    pub fn new(len: u64, backing: Backing) -> Result<Self> {
        let map_err = |errno| Error::Mmap {
            bytes: len,
            backing: backing.name(),
            errno,
            hint: backing.hint(),
        };
        let size = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or(map_err(nix::Error::EINVAL))?;
        // SAFETY: a fresh anonymous mapping aliases nothing; the kernel picks the address.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                backing.flags(),
            )
        }
        .map_err(map_err)?;
        Ok(HostMemory {
            ptr: ptr.cast(),
            len: size.get(),
            backing,
        })
    }

    /// First byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true: zero-length mappings are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The backing of this memory.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Reads the u64 at `offset` (8-byte aligned, inside the mapping).
    pub fn read_u64(&self, offset: usize) -> u64 {
        self.word(offset, "read_u64").load(Ordering::Relaxed)
    }

    /// Writes the u64 at `offset` (8-byte aligned, inside the mapping).
    pub fn write_u64(&self, offset: usize, value: u64) {
        self.word(offset, "write_u64")
            .store(value, Ordering::Relaxed)
    }

    /// Copies `bytes` into the mapping at `offset`.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        assert!(
            offset
                .checked_add(bytes.len())
                .is_some_and(|end| end <= self.len),
            "write_bytes out of bounds"
        );
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (asserted); atomic byte stores, so a concurrent access from
            // another thread through this shared value is not a data race.
            unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(offset + i)) }
                .store(b, Ordering::Relaxed);
        }
    }

    /// The u64 at `offset` as an atomic: threads share `&HostMemory` (vCPU threads, handlers,
    /// the verifier), so every access goes through atomics and none is a data race.
    fn word(&self, offset: usize, what: &str) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset.checked_add(8).is_some_and(|end| end <= self.len),
            "{what} out of bounds"
        );
        // SAFETY: in bounds and 8-byte aligned (asserted; the mapping is page aligned); the
        // mapping lives as long as `self`, which the returned reference borrows.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast::<u64>()) }
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no reference into it outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_memory_is_zero_and_writable() {
        let m = HostMemory::new(4 * PAGE_SIZE, Backing::Anonymous).unwrap();
        assert_eq!(m.read_u64(8192), 0);
        m.write_u64(8192, 42);
        assert_eq!(m.read_u64(8192), 42);
    }

    #[test]
    fn zero_length_is_refused() {
        assert!(matches!(
            HostMemory::new(0, Backing::Shared),
            Err(Error::Mmap { .. })
        ));
    }

    /// Offsets near usize::MAX must not wrap around the bounds check (release builds have no
    /// overflow checks).
    #[test]
    fn offsets_that_overflow_are_out_of_bounds() {
        let m = HostMemory::new(4096, Backing::Anonymous).unwrap();
        for offset in [usize::MAX - 7, 4096, 4090] {
            let read = std::panic::catch_unwind(|| m.read_u64(offset));
            assert!(read.is_err(), "read_u64({offset:#x}) must panic");
        }
        assert!(std::panic::catch_unwind(|| m.write_bytes(usize::MAX, &[1, 2])).is_err());
        m.write_bytes(4094, &[1, 2]);
        assert_eq!(m.read_u64(4088) >> 48, 0x0201);
    }
}

#[cfg(test)]
mod hugetlb_tests {
    use super::*;

    fn free_huge_pages() -> u64 {
        let info = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with("HugePages_Free:"))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Hugetlb works when 2 MiB pages are reserved and fails with advice when they are not;
    /// whichever the machine has, the outcome is checked.
    #[test]
    fn hugetlb_maps_or_explains() {
        let result = HostMemory::new(HUGE_PAGE_SIZE, Backing::Hugetlb);
        if free_huge_pages() >= 1 {
            let m = result.unwrap();
            m.write_u64(HUGE_PAGE_SIZE as usize - 8, 7);
            assert_eq!(m.read_u64(HUGE_PAGE_SIZE as usize - 8), 7);
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("nr_hugepages"), "{err}");
        }
    }
}
