//! Where each vCPU's slice of test memory is, checked the way the seed checks it, and the
//! after-run verification that every page holds what was written.

use crate::error::{Error, Result};
use crate::guest::page_value;
use crate::memory::{Backing, HostMemory, PAGE_SIZE};
use serde::Serialize;

/// Guest virtual address of the test memory (the seed's DEFAULT_GUEST_TEST_MEM, 3 GiB), above
/// the identity-mapped low memory holding code, arguments and page tables.
pub const TEST_GVA: u64 = 0xc000_0000;
/// First non-canonical guest virtual address with 4-level paging.
const GVA_LIMIT: u64 = 1 << 47;

/// The test memory split into one contiguous slice per vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// Number of vCPUs (or host threads).
    pub vcpus: usize,
    /// Bytes of test memory per vCPU.
    pub bytes_per_vcpu: u64,
    /// Guest page size: the unit the guest touches and dirty logging tracks.
    pub guest_page_size: u64,
    /// Host page size of the backing: the unit of a host fault or a UFFDIO_COPY.
    pub host_page_size: u64,
    /// Guest pages per vCPU.
    pub pages_per_vcpu: u64,
    /// Guest virtual address of vCPU 0's first page.
    pub gva: u64,
    /// Every vCPU visits all the test memory (the selftests' `-o`) instead of its own slice.
    pub overlap: bool,
}

impl Layout {
    /// Checks the sizes: 1..=`max_vcpus` vCPUs, a slice that is a multiple of the guest and
    /// the host page size, and a region that fits the guest's virtual address space.
    pub fn new(
        vcpus: usize,
        bytes_per_vcpu: u64,
        backing: Backing,
        max_vcpus: usize,
    ) -> Result<Self> {
        Layout::with_overlap(vcpus, bytes_per_vcpu, backing, max_vcpus, false)
    }

    /// [`Layout::new`], with all vCPUs on one shared slice when `overlap` is set.
    pub fn with_overlap(
        vcpus: usize,
        bytes_per_vcpu: u64,
        backing: Backing,
        max_vcpus: usize,
        overlap: bool,
    ) -> Result<Self> {
        if vcpus == 0 {
            return Err(Error::VcpuCount {
                requested: 0,
                why: "a test needs at least one",
                max: max_vcpus,
            });
        }
        if vcpus > max_vcpus {
            return Err(Error::VcpuCount {
                requested: vcpus,
                why: "that is more than KVM allows",
                max: max_vcpus,
            });
        }
        let host_page_size = backing.page_size();
        for (which, page) in [("guest", PAGE_SIZE), ("host", host_page_size)] {
            if bytes_per_vcpu == 0 || !bytes_per_vcpu.is_multiple_of(page) {
                let suggestion = bytes_per_vcpu.div_ceil(page).max(1) * page;
                return Err(Error::Unaligned {
                    bytes: bytes_per_vcpu,
                    which,
                    page,
                    suggestion,
                });
            }
        }
        let layout = Layout {
            vcpus,
            bytes_per_vcpu,
            guest_page_size: PAGE_SIZE,
            host_page_size,
            // memstress's -o: the memory is still vCPUs x bytes, and each vCPU visits all of it.
            pages_per_vcpu: bytes_per_vcpu / PAGE_SIZE * if overlap { vcpus as u64 } else { 1 },
            gva: TEST_GVA,
            overlap,
        };
        let gva_pages = (GVA_LIMIT - TEST_GVA) / PAGE_SIZE;
        if layout.memory_pages() > gva_pages {
            return Err(Error::TooMuchMemory {
                pages: layout.memory_pages(),
                space: "guest virtual address space above 3 GiB",
                limit: gva_pages,
            });
        }
        check_host_memory(layout.total_bytes(), backing)?;
        Ok(layout)
    }

    /// Total bytes of test memory.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_per_vcpu * self.vcpus as u64
    }

    /// Guest pages of test memory.
    pub fn memory_pages(&self) -> u64 {
        self.total_bytes() / self.guest_page_size
    }

    /// Pages visited in one pass, over all vCPUs: [`Layout::memory_pages`] times the vCPUs
    /// when they overlap (each visits all the memory).
    pub fn total_pages(&self) -> u64 {
        self.pages_per_vcpu * self.vcpus as u64
    }

    /// Guest virtual address of `page` of `vcpu`.
    pub fn page_gva(&self, vcpu: usize, page: u64) -> u64 {
        self.gva + self.offset(vcpu, page)
    }

    /// Byte offset of `page` of `vcpu` in the test memory.
    pub fn offset(&self, vcpu: usize, page: u64) -> u64 {
        let slice = if self.overlap { 0 } else { vcpu as u64 };
        slice * self.bytes_per_vcpu + page * self.guest_page_size
    }

    /// Bytes each vCPU visits: its slice, or all the memory when the vCPUs overlap.
    pub fn bytes_visited_per_vcpu(&self) -> u64 {
        self.pages_per_vcpu * self.guest_page_size
    }

    /// Checks every page of every vCPU after a pass: page `p` of vCPU `v` must hold the value
    /// written in `last_write(v, p)`'s iteration (see [`page_value`]), and its last 8 bytes must equal
    /// `tail` (0 for kernel-zeroed pages, the UFFDIO_COPY source pattern otherwise).
    pub fn verify(
        &self,
        mem: &HostMemory,
        last_write: impl Fn(usize, u64) -> u64,
        tail: u64,
    ) -> Verification {
        let mut v = Verification {
            pages_checked: 0,
            mismatches: 0,
            first_mismatch: None,
        };
        for vcpu in 0..self.vcpus {
            for page in 0..self.pages_per_vcpu {
                let off = self.offset(vcpu, page) as usize;
                let expected = page_value(self.page_gva(vcpu, page), last_write(vcpu, page));
                let found = mem.read_u64(off);
                let found_tail = mem.read_u64(off + self.guest_page_size as usize - 8);
                v.pages_checked += 1;
                if found != expected || found_tail != tail {
                    v.mismatches += 1;
                    v.first_mismatch.get_or_insert(Mismatch {
                        vcpu,
                        page,
                        expected,
                        found,
                        tail: found_tail,
                    });
                }
            }
        }
        v
    }
}

/// The outcome of checking the test memory after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Pages whose contents were checked.
    pub pages_checked: u64,
    /// Pages that did not hold the expected value.
    pub mismatches: u64,
    /// The first wrong page, if any.
    pub first_mismatch: Option<Mismatch>,
}

impl Verification {
    /// True when every page was checked and held what was written.
    pub fn ok(&self, expected_pages: u64) -> bool {
        self.mismatches == 0 && self.pages_checked == expected_pages
    }
}

/// One page that did not hold what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// vCPU owning the page.
    pub vcpu: usize,
    /// Page index within the vCPU's slice.
    pub page: u64,
    /// Expected first 8 bytes.
    pub expected: u64,
    /// Found first 8 bytes.
    pub found: u64,
    /// Found last 8 bytes.
    pub tail: u64,
}

/// Refuses a test that would touch more memory than the host has available. Hugetlb pages are
/// reserved separately (and a mapping without enough of them fails at once), so they are not
/// counted here.
fn check_host_memory(bytes: u64, backing: Backing) -> Result<()> {
    if backing == Backing::Hugetlb {
        return Ok(());
    }
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(());
    };
    let kib = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let available = (kib("MemAvailable:") + kib("SwapFree:")) * 1024;
    if bytes > available {
        return Err(Error::NotEnoughHostMemory {
            needed: tracekit_core::units::human_bytes(bytes),
            available: tracekit_core::units::human_bytes(available),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(
            Layout::new(0, 1 << 20, Backing::Anonymous, 8),
            Err(Error::VcpuCount { .. })
        ));
        assert!(matches!(
            Layout::new(9, 1 << 20, Backing::Anonymous, 8),
            Err(Error::VcpuCount { .. })
        ));
        assert!(matches!(
            Layout::new(1, 4097, Backing::Anonymous, 8),
            Err(Error::Unaligned {
                which: "guest",
                suggestion: 8192,
                ..
            })
        ));
        assert!(matches!(
            Layout::new(1, 1 << 20, Backing::Hugetlb, 8),
            Err(Error::Unaligned {
                which: "host",
                suggestion: 0x20_0000,
                ..
            })
        ));
        assert!(matches!(
            Layout::new(2, 1 << 46, Backing::Anonymous, 8),
            Err(Error::TooMuchMemory { .. })
        ));
        let l = Layout::new(2, 1 << 20, Backing::Anonymous, 8).unwrap();
        assert_eq!(
            (l.total_pages(), l.page_gva(1, 1)),
            (512, TEST_GVA + (1 << 20) + 4096)
        );
    }

    #[test]
    fn verify_finds_the_one_wrong_page() {
        let l = Layout::new(2, 4 * PAGE_SIZE, Backing::Anonymous, 8).unwrap();
        let mem = HostMemory::new(l.total_bytes(), Backing::Anonymous).unwrap();
        for vcpu in 0..2 {
            for page in 0..4 {
                mem.write_u64(
                    l.offset(vcpu, page) as usize,
                    page_value(l.page_gva(vcpu, page), 3),
                );
            }
        }
        assert!(l.verify(&mem, |_, _| 3, 0).ok(8));
        mem.write_u64(l.offset(1, 2) as usize, 0);
        let v = l.verify(&mem, |_, _| 3, 0);
        assert_eq!(
            (v.mismatches, v.first_mismatch.map(|m| (m.vcpu, m.page))),
            (1, Some((1, 2)))
        );
    }
}
