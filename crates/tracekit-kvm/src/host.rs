//! The host-only variant: the guest's access pattern run by plain host threads on the same
//! kind of memory. It needs no /dev/kvm and is the floor the guest numbers compare with
//! (first-touch page faults, or UFFDIO_COPY faults with userfaultfd).

use crate::error::{Error, Result};
use crate::guest::page_value;
use crate::layout::Layout;
use crate::memory::{Backing, HostMemory};
use crate::runner::{PassTimes, Toucher, run_threads};
use std::sync::atomic::{AtomicU64, Ordering};
use tracekit_core::process::Progress;

/// Upper bound on host threads, standing in for KVM's vCPU limit.
pub const MAX_HOST_THREADS: usize = 1024;

/// One cache line per counter, so progress stores do not bounce lines between threads.
#[repr(align(64))]
#[derive(Default)]
struct Counter(AtomicU64);

/// Host threads touching the test memory as the guest would.
pub struct HostToucher {
    layout: Layout,
    mem: HostMemory,
    wr_fract: u64,
    done: Vec<Counter>,
}

impl HostToucher {
    /// Maps the memory for `threads` threads with `bytes_per_thread` each.
    pub fn new(threads: usize, bytes_per_thread: u64, backing: Backing) -> Result<Self> {
        HostToucher::with_overlap(threads, bytes_per_thread, backing, false)
    }

    /// [`HostToucher::new`], all threads on the same memory when `overlap` is set.
    pub fn with_overlap(
        threads: usize,
        bytes_per_thread: u64,
        backing: Backing,
        overlap: bool,
    ) -> Result<Self> {
        let max = MAX_HOST_THREADS;
        let layout = Layout::with_overlap(threads, bytes_per_thread, backing, max, overlap)
            .map_err(|e| match e {
                Error::VcpuCount { requested, max, .. } if requested > max => Error::VcpuCount {
                    requested,
                    why: "that is more host threads than --no-kvm starts",
                    max,
                },
                other => other,
            })?;
        let mem = HostMemory::new(layout.total_bytes(), backing)?;
        let done = (0..threads).map(|_| Counter::default()).collect();
        Ok(HostToucher {
            layout,
            mem,
            wr_fract: 1,
            done,
        })
    }

    /// Sets how many pages out of `wr_fract` are written (the rest are read).
    pub fn set_wr_fract(&mut self, wr_fract: u64) {
        self.wr_fract = wr_fract.max(1);
    }
}

impl Toucher for HostToucher {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn memory(&self) -> &HostMemory {
        &self.mem
    }

    fn run_pass(
        &mut self,
        iteration: u64,
        cpus: Option<&[usize]>,
        tick: Progress,
    ) -> Result<PassTimes> {
        let (layout, mem, wr_fract, done) = (&self.layout, &self.mem, self.wr_fract, &self.done);
        done.iter().for_each(|c| c.0.store(0, Ordering::Relaxed));
        let jobs = (0..layout.vcpus)
            .map(|v| {
                move || {
                    for page in 0..layout.pages_per_vcpu {
                        let offset = layout.offset(v, page) as usize;
                        if page % wr_fract == 0 {
                            mem.write_u64(offset, page_value(layout.page_gva(v, page), iteration));
                        } else {
                            std::hint::black_box(mem.read_u64(offset));
                        }
                        done[v].0.store(page + 1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            })
            .collect();
        let progress = || done.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        run_threads(jobs, cpus, &progress, tick)
    }
}
