//! What both tests are configured with, so that neither test module depends on the other.

use crate::guest::Privilege;
use crate::memory::Backing;
use crate::vm::VmOptions;
use serde::Serialize;
use std::path::PathBuf;

/// Which threads touch the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// vCPUs of a KVM guest.
    Kvm,
    /// Host threads (`--no-kvm`).
    Host,
}

/// What both tests are configured with: who touches how much memory of which kind, where.
/// [`DemandPagingOptions`](crate::DemandPagingOptions) and
/// [`DirtyLogOptions`](crate::DirtyLogOptions) embed it as `common`.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Who touches the memory.
    pub engine: Engine,
    /// Number of vCPUs (threads).
    pub vcpus: usize,
    /// Bytes of test memory per vCPU.
    pub bytes_per_vcpu: u64,
    /// Host backing.
    pub backing: Backing,
    /// Pin vCPU `i` (and, for demand paging, its userfaultfd handler) to `cpus[i]`.
    pub cpus: Option<Vec<usize>>,
    /// The KVM device (normally /dev/kvm).
    pub kvm_device: PathBuf,
    /// Privilege level of the guest loop.
    pub privilege: Privilege,
    /// Every vCPU touches the same memory instead of its own slice (the selftests' `-o`).
    pub overlap: bool,
    /// Memory slots the test memory is split into (the selftests' `-x`; KVM only).
    pub slots: usize,
    /// Guest physical address of the test memory instead of the top of guest physical memory
    /// (what dirty_log_perf_test's `-p` says it does; KVM only).
    pub gpa: Option<u64>,
}

impl CommonOptions {
    /// The options of the VM these run on (KVM only).
    pub fn vm_options(&self, manual_dirty_protect: bool) -> VmOptions {
        VmOptions {
            device: self.kvm_device.clone(),
            backing: self.backing,
            manual_dirty_protect,
            privilege: self.privilege,
            overlap: self.overlap,
            slots: self.slots,
            gpa: self.gpa,
        }
    }

    /// Refuses what only a guest has: memslots belong to a VM, so `--no-kvm` cannot split its
    /// memory into them (rather than ignore the request).
    pub fn check(&self) -> crate::Result<()> {
        if self.engine == Engine::Host && self.slots != 1 {
            return Err(crate::Error::Invalid(format!(
                "{} memslots requested, but host threads (--no-kvm) have no memslots; drop -x",
                self.slots
            )));
        }
        if self.engine == Engine::Host && self.gpa.is_some() {
            return Err(crate::Error::Invalid(
                "a guest physical address was given, but host threads (--no-kvm) have no guest; \
                 drop --gpa"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The guest's CPU mode as the reports give it: none without a guest.
    pub fn guest_mode(&self) -> Option<&'static str> {
        (self.engine == Engine::Kvm).then_some(self.privilege.describe())
    }
}
