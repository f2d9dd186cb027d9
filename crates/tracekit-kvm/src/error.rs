//! Errors of the KVM performance tests. Each message says what to do next.

use thiserror::Error;

/// Everything that can stop a memory performance test.
#[derive(Debug, Error)]
pub enum Error {
    /// `/dev/kvm` is missing or cannot be opened.
    #[error(
        "cannot open {0}: {1}; load the kvm module (and run as root or in group kvm), or use --no-kvm for the host-only variant"
    )]
    NoKvm(String, std::io::Error),
    /// A KVM ioctl failed.
    #[error("KVM {what} failed: {errno}")]
    Kvm {
        /// The operation that failed.
        what: &'static str,
        /// The errno KVM returned.
        errno: kvm_ioctls::Error,
    },
    /// The number of vCPUs is out of range.
    #[error("{requested} vCPUs requested, but {why}; choose between 1 and {max}")]
    VcpuCount {
        /// What was asked for.
        requested: usize,
        /// Why it is refused.
        why: &'static str,
        /// The largest accepted value.
        max: usize,
    },
    /// The per-vCPU memory size is not a multiple of a page size.
    #[error(
        "{bytes} bytes per vCPU is not a multiple of the {which} page size ({page} bytes); round it, e.g. to {suggestion}"
    )]
    Unaligned {
        /// The requested size.
        bytes: u64,
        /// "guest" or "host".
        which: &'static str,
        /// The page size it must be a multiple of.
        page: u64,
        /// The next multiple up.
        suggestion: u64,
    },
    /// The test memory would not fit in the guest's physical or virtual address space.
    #[error(
        "requested more guest memory than the address space allows: {pages} guest pages but the {space} holds {limit}; use fewer vCPUs or fewer bytes per vCPU"
    )]
    TooMuchMemory {
        /// Pages requested.
        pages: u64,
        /// Which address space is too small.
        space: &'static str,
        /// Pages that fit.
        limit: u64,
    },
    /// The host has less memory available than the test would fault in (the mapping is made
    /// with MAP_NORESERVE, so without this check the OOM killer would end the run instead).
    #[error(
        "the test needs {needed} of memory but the host has {available} available (MemAvailable + SwapFree in /proc/meminfo); use fewer vCPUs or fewer bytes per vCPU"
    )]
    NotEnoughHostMemory {
        /// What the test would touch, human readable.
        needed: String,
        /// What the host has, human readable.
        available: String,
    },
    /// A memory mapping could not be created.
    #[error("cannot map {bytes} bytes of {backing} memory: {errno}{hint}")]
    Mmap {
        /// Size of the mapping.
        bytes: u64,
        /// Backing name.
        backing: &'static str,
        /// The errno.
        errno: nix::Error,
        /// Advice for this backing.
        hint: &'static str,
    },
    /// userfaultfd could not be set up or failed while serving faults.
    #[error("userfaultfd {what} failed: {errno}{hint}")]
    Uffd {
        /// The operation that failed.
        what: &'static str,
        /// The errno.
        errno: nix::Error,
        /// Advice.
        hint: &'static str,
    },
    /// The guest stopped in a way the test does not expect.
    #[error(
        "vCPU {vcpu} stopped unexpectedly: {exit}; this is a bug in the guest setup or a KVM limitation, rerun with -v 1 to narrow it down"
    )]
    GuestExit {
        /// The vCPU index.
        vcpu: usize,
        /// The exit reason, as text.
        exit: String,
    },
    /// Pinning a thread to a CPU failed.
    #[error(
        "cannot pin a thread to CPU {cpu}: {errno}; check the CPU list against `nproc` and the cpuset of this shell"
    )]
    Pin {
        /// The CPU.
        cpu: usize,
        /// The errno.
        errno: nix::Error,
    },
    /// The CPU list does not name one CPU per vCPU.
    #[error(
        "the CPU list has {given} CPUs but {vcpus} vCPUs run; give one CPU per vCPU (e.g. -c 0,1 for -v 2)"
    )]
    CpuListLength {
        /// CPUs given.
        given: usize,
        /// vCPUs.
        vcpus: usize,
    },
    /// A test parameter is out of range.
    #[error("{0}")]
    Invalid(String),
    /// A worker thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// Result of the KVM performance tests.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps a KVM ioctl error with the name of the operation.
pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |errno| Error::Kvm { what, errno }
}
