//! The demand-paging test: every vCPU touches each of its pages once while the pages are still
//! missing on the host, so each touch is a fault served by the kernel or by userfaultfd.

use crate::error::{Error, Result};
use crate::host::HostToucher;
use crate::layout::Verification;
use crate::memory::Backing;
use crate::options::{CommonOptions, Engine};
use crate::runner::{PassTimes, Toucher};
use crate::uffd::{COPY_PATTERN, UffdHandlers, UffdOptions, UffdStats};
use crate::vm::PerfTestVm;
use serde::Serialize;
use tracekit_core::process::Progress;

/// Parameters of a demand-paging run.
#[derive(Debug, Clone)]
pub struct DemandPagingOptions {
    /// What both tests share.
    pub common: CommonOptions,
    /// Serve faults with userfaultfd, so configured; `None`: the kernel serves them.
    pub uffd: Option<UffdOptions>,
}

/// Result of a demand-paging run, as printed and as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DemandPagingOutcome {
    /// Always "demand-paging".
    pub test: &'static str,
    /// Who touched the memory.
    pub engine: Engine,
    /// Guest CPU mode (KVM only).
    pub guest_mode: Option<&'static str>,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Bytes per vCPU.
    pub bytes_per_vcpu: u64,
    /// Guest pages per vCPU.
    pub pages_per_vcpu: u64,
    /// Guest pages in all.
    pub total_pages: u64,
    /// Host backing.
    pub backing: Backing,
    /// Guest physical address of the test slot (KVM only).
    pub test_gpa: Option<u64>,
    /// Guest virtual address of the test memory.
    pub test_gva: u64,
    /// CPUs the vCPUs were pinned to.
    pub cpus: Option<Vec<usize>>,
    /// userfaultfd handler statistics, when faults were served by userfaultfd.
    pub uffd: Option<UffdStats>,
    /// Seconds each vCPU took (host clock, from the common start to its sync exit).
    pub vcpu_seconds: Vec<f64>,
    /// Seconds each vCPU's pass took as the guest timed it (its TSC from the pass's first
    /// instruction to its last page touched; KVM only): the host's share of a run is the
    /// difference.
    pub guest_seconds: Option<Vec<f64>>,
    /// Seconds from the first vCPU starting to the last finishing.
    pub total_seconds: f64,
    /// Pages faulted in per second over all vCPUs: pages of test memory / total seconds (with
    /// overlapping vCPUs each page is faulted once however many vCPUs visit it).
    pub pages_per_sec: f64,
    /// Pages visited over all vCPUs (`total_pages`, or vCPUs × the memory's pages with
    /// overlapping vCPUs).
    pub pages_visited: u64,
    /// True only when every page was checked after the run and held what was written.
    pub verified: bool,
    /// Details of the check.
    pub verification: Verification,
}

/// Runs the demand-paging test; `tick` gets the pages touched so far every 100 ms.
pub fn run_demand_paging(
    options: &DemandPagingOptions,
    tick: Progress,
) -> Result<DemandPagingOutcome> {
    let common = &options.common;
    common.check()?;
    let mut toucher: Box<dyn Toucher> = match common.engine {
        Engine::Kvm => Box::new(PerfTestVm::new(
            common.vcpus,
            common.bytes_per_vcpu,
            &common.vm_options(false),
        )?),
        Engine::Host => Box::new(HostToucher::with_overlap(
            common.vcpus,
            common.bytes_per_vcpu,
            common.backing,
            common.overlap,
        )?),
    };
    let cpus = common.cpus.as_deref();
    crate::runner::check_cpus(cpus, common.vcpus)?;
    let layout = *toucher.layout();
    let handlers = match options.uffd {
        Some(uffd) => Some(UffdHandlers::start(toucher.memory(), &layout, &uffd, cpus)?),
        None => None,
    };
    let times: PassTimes = toucher.run_pass(0, cpus, tick)?;
    let uffd = handlers.map(UffdHandlers::stop).transpose()?;
    let tail = if uffd.is_some() { COPY_PATTERN } else { 0 };
    let verification = layout.verify(toucher.memory(), |_, _| 0, tail);
    let total_seconds = times.total.as_secs_f64();
    let report = DemandPagingOutcome {
        test: "demand-paging",
        engine: common.engine,
        guest_mode: common.guest_mode(),
        vcpus: layout.vcpus,
        bytes_per_vcpu: layout.bytes_per_vcpu,
        pages_per_vcpu: layout.pages_per_vcpu,
        total_pages: layout.memory_pages(),
        backing: common.backing,
        test_gpa: toucher.test_gpa(),
        test_gva: layout.gva,
        cpus: common.cpus.clone(),
        uffd,
        vcpu_seconds: seconds(&times.per_vcpu),
        guest_seconds: times.guest.as_deref().map(seconds),
        total_seconds,
        pages_per_sec: layout.memory_pages() as f64 / total_seconds.max(1e-9),
        pages_visited: layout.total_pages(),
        // Every visit is checked: vCPUs x the memory's pages with overlapping vCPUs.
        verified: verification.ok(layout.total_pages()),
        verification,
    };
    Ok(report)
}

/// Durations as seconds.
pub(crate) fn seconds(times: &[std::time::Duration]) -> Vec<f64> {
    times.iter().map(|d| d.as_secs_f64()).collect()
}

impl DemandPagingOutcome {
    /// An error describing the first page that did not hold what was written, if any.
    pub fn verification_error(&self) -> Option<Error> {
        let m = self.verification.first_mismatch?;
        Some(Error::Invalid(format!(
            "{} of {} pages lost their contents (first: vCPU {} page {}: expected {:#x}, found {:#x}, page tail {:#x}); \
             the memory was not faulted in correctly",
            self.verification.mismatches,
            self.total_pages,
            m.vcpu,
            m.page,
            m.expected,
            m.found,
            m.tail
        )))
    }
}
