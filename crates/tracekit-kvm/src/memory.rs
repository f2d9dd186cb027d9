//! Host memory that backs the guest's test slot (or the host-only variant's buffer).

use crate::error::{Error, Result};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, mmap_anonymous, munmap};
use serde::Serialize;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The size of a base page on x86-64 hosts and of a guest page in the modes tracekit builds.
pub const PAGE_SIZE: u64 = 4096;
/// The size of a hugetlb page (the default 2 MiB size on x86-64).
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// How the test memory is backed on the host (the selftests' `-s` backing sources this machine
/// can have: anonymous, anonymous_thp, anonymous_hugetlb (2 MiB), shmem, shared_hugetlb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backing {
    /// Private anonymous memory (`MAP_PRIVATE | MAP_ANONYMOUS`), the seed's default.
    Anonymous,
    /// Private anonymous memory aligned to 2 MiB with `MADV_HUGEPAGE` (transparent huge pages,
    /// the selftests' anonymous_thp).
    AnonymousThp,
    /// Shared memory: a memfd (shmem) mapped `MAP_SHARED`, the selftests' shmem.
    Shared,
    /// Anonymous hugetlb pages of 2 MiB (`MAP_HUGETLB`); needs `vm.nr_hugepages`.
    Hugetlb,
    /// A hugetlb memfd of 2 MiB pages mapped `MAP_SHARED` (the selftests' shared_hugetlb).
    SharedHugetlb,
}

impl Backing {
    /// Every backing, in the order the command line lists them.
    pub const ALL: [Backing; 5] = [
        Backing::Anonymous,
        Backing::AnonymousThp,
        Backing::Shared,
        Backing::Hugetlb,
        Backing::SharedHugetlb,
    ];

    /// The backing called `name` (see [`Backing::name`]).
    pub fn from_name(name: &str) -> Option<Backing> {
        Backing::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backing::Anonymous => "anonymous",
            Backing::AnonymousThp => "anonymous-thp",
            Backing::Shared => "shared",
            Backing::Hugetlb => "hugetlb",
            Backing::SharedHugetlb => "shared-hugetlb",
        }
    }

    /// The host page size of this backing: the unit of a fault and of a userfaultfd copy (for
    /// THP, the huge page size, as the selftests use it: sizes and UFFDIO_COPY are 2 MiB).
    pub fn page_size(self) -> u64 {
        match self {
            Backing::Anonymous | Backing::Shared => PAGE_SIZE,
            Backing::AnonymousThp | Backing::Hugetlb | Backing::SharedHugetlb => HUGE_PAGE_SIZE,
        }
    }

    /// Whether the memory is shared (a file another mapping can alias): what userfaultfd minor
    /// faults need.
    pub fn is_shared(self) -> bool {
        matches!(self, Backing::Shared | Backing::SharedHugetlb)
    }

    fn is_hugetlb(self) -> bool {
        matches!(self, Backing::Hugetlb | Backing::SharedHugetlb)
    }

    fn flags(self) -> MapFlags {
        let base = MapFlags::MAP_NORESERVE;
        match self {
            Backing::Anonymous | Backing::AnonymousThp => base | MapFlags::MAP_PRIVATE,
            Backing::Shared => base | MapFlags::MAP_SHARED,
            // No MAP_NORESERVE for hugetlb: the mapping then reserves its huge pages up front
            // and fails at once when too few are free, instead of a guest fault failing later.
            Backing::SharedHugetlb => MapFlags::MAP_SHARED,
            Backing::Hugetlb => MapFlags::MAP_PRIVATE | MapFlags::MAP_HUGETLB,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Backing::Hugetlb | Backing::SharedHugetlb => {
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
    /// The whole mapping made (for THP it is larger than `len`, to align `ptr`).
    mapped: (NonNull<u8>, usize),
    /// The memfd of shared backings, from which [`HostMemory::alias`] maps a second view.
    file: Option<OwnedFd>,
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
        if backing.is_shared() {
            let file = shared_file(size, backing).map_err(map_err)?;
            let ptr = map_file(&file, size, backing).map_err(map_err)?;
            return Ok(HostMemory::from_parts(ptr, size.get(), backing, Some(file)));
        }
        // THP: over-map by one huge page so the test memory can start on a 2 MiB boundary
        // (a huge page is only used for an aligned 2 MiB range).
        let extra = if backing == Backing::AnonymousThp {
            HUGE_PAGE_SIZE as usize
        } else {
            0
        };
        let size = size.get();
        let whole = size.saturating_add(extra);
        // SAFETY: a fresh anonymous mapping aliases nothing; the kernel picks the address.
        let base = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(whole).expect("non-zero"),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                backing.flags(),
            )
        }
        .map_err(map_err)?
        .cast::<u8>();
        let skip = (base.as_ptr() as usize).next_multiple_of(extra.max(1)) - base.as_ptr() as usize;
        // SAFETY: `skip < extra`, so the aligned start and `size` bytes after it are inside the
        // mapping of `size + extra` bytes.
        let ptr = unsafe { base.add(skip) };
        let mut mem = HostMemory::from_parts(ptr, size, backing, None);
        mem.mapped = (base, whole);
        if backing == Backing::AnonymousThp {
            // SAFETY: advice on our own fresh mapping; it changes no contents.
            unsafe { madvise(ptr.cast(), size, MmapAdvise::MADV_HUGEPAGE) }.map_err(map_err)?;
        }
        Ok(mem)
    }

    fn from_parts(ptr: NonNull<u8>, len: usize, backing: Backing, file: Option<OwnedFd>) -> Self {
        HostMemory {
            ptr,
            len,
            backing,
            mapped: (ptr, len),
            file,
        }
    }

    /// A second mapping of the same shared memory (shared backings only): writes through it
    /// fill the page cache without mapping the pages in `self`, which is how the pages of a
    /// userfaultfd minor-fault test are prepared.
    pub fn alias(&self) -> Result<HostMemory> {
        let file = self.file.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "{} memory has no second mapping; minor faults need shared memory (-s shared or shared-hugetlb)",
                self.backing.name()
            ))
        })?;
        let size = NonZeroUsize::new(self.len).expect("non-empty mapping");
        let ptr = map_file(file, size, self.backing).map_err(|errno| Error::Mmap {
            bytes: self.len as u64,
            backing: self.backing.name(),
            errno,
            hint: self.backing.hint(),
        })?;
        Ok(HostMemory::from_parts(ptr, self.len, self.backing, None))
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
        let _ = unsafe { munmap(self.mapped.0.cast(), self.mapped.1) };
    }
}

/// A memfd of `size` bytes for a shared backing (hugetlb pages for shared hugetlb).
fn shared_file(size: NonZeroUsize, backing: Backing) -> nix::Result<OwnedFd> {
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if backing.is_hugetlb() {
        flags |= MFdFlags::MFD_HUGETLB;
    }
    let file = memfd_create(c"tracekit-kvm", flags)?;
    nix::unistd::ftruncate(&file, size.get() as i64)?;
    Ok(file)
}

/// Maps all of a shared backing's memfd, read-write and shared.
fn map_file(file: &OwnedFd, size: NonZeroUsize, backing: Backing) -> nix::Result<NonNull<u8>> {
    // SAFETY: a new shared mapping of our own memfd; other mappings of it (aliases) see the same
    // pages, and every access to them goes through atomics (see `word`).
    let ptr = unsafe {
        mmap(
            None,
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            backing.flags(),
            file,
            0,
        )
    }?;
    Ok(ptr.cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_has_an_alias_and_thp_is_aligned() {
        let m = HostMemory::new(2 * PAGE_SIZE, Backing::Shared).unwrap();
        let alias = m.alias().unwrap();
        alias.write_u64(4096, 0xabc);
        assert_eq!(m.read_u64(4096), 0xabc);
        let err = HostMemory::new(PAGE_SIZE, Backing::Anonymous)
            .unwrap()
            .alias()
            .unwrap_err();
        assert!(
            err.to_string().contains("minor faults need shared memory"),
            "{err}"
        );
        let thp = HostMemory::new(2 * HUGE_PAGE_SIZE, Backing::AnonymousThp).unwrap();
        assert_eq!(thp.as_ptr() as u64 % HUGE_PAGE_SIZE, 0);
        thp.write_u64(HUGE_PAGE_SIZE as usize * 2 - 8, 5);
        assert_eq!(thp.read_u64(HUGE_PAGE_SIZE as usize * 2 - 8), 5);
    }

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
        for backing in [Backing::Hugetlb, Backing::SharedHugetlb] {
            let result = HostMemory::new(HUGE_PAGE_SIZE, backing);
            if free_huge_pages() >= 1 {
                let m = result.unwrap();
                m.write_u64(HUGE_PAGE_SIZE as usize - 8, 7);
                assert_eq!(m.read_u64(HUGE_PAGE_SIZE as usize - 8), 7);
            } else {
                let err = result.unwrap_err().to_string();
                assert!(err.contains("nr_hugepages"), "{backing:?}: {err}");
            }
        }
    }
}
