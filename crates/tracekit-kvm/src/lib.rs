//! tracekit's KVM multi-vCPU memory performance-test library (the counterpart of the KVM
//! selftests' perf_test_util / memstress), and the two tests built on it.
//!
//! A [`PerfTestVm`] has N vCPUs in 64-bit long mode with 4-level paging and 4 KiB guest pages,
//! running the test loop in user mode (CPL 3) unless [`Privilege::Supervisor`] is asked for.
//! Its test memory (N × bytes per vCPU) is a memory slot at the top of guest physical memory,
//! mapped at guest virtual address [`TEST_GVA`]; vCPU `i` owns the `i`-th slice ([`Layout`]),
//! described by an argument block the guest reads. The guest code ([`guest::guest_code`],
//! assembled with iced-x86, integer instructions only) writes [`page_value`] into the first
//! 8 bytes of every page of its slice and then exits to the host. [`Toucher::run_pass`] runs
//! all vCPUs at once, one thread each, and times each.
//!
//! On top of it: [`run_demand_paging`] (faults served by the kernel or by userfaultfd
//! handlers, [`UffdHandlers`]) and [`run_dirty_log`] (KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG
//! between passes). [`HostToucher`] runs the same pattern from host threads, without KVM.
//! [`render`] lays their reports out as text; the reports serialize as the JSON documents.
//!
//! # A custom memory test
//!
//! The library's pieces make other tests, as memstress made the selftests after it. Here: does
//! re-reading memory the guest has faulted in dirty anything, and how long do the passes take,
//! by the host's clock and by the guest's?
//!
//! ```
//! use tracekit_kvm::{AccessPattern, Backing, PerfTestVm, Toucher, VmOptions};
//!
//! let mut vm = PerfTestVm::new(2, 4 << 20, &VmOptions::new(Backing::Anonymous))?;
//! let fault_in = vm.run_pass(0, None, &mut |_| {})?; // writes (and faults in) every page
//! vm.set_dirty_logging(true)?;
//! vm.seed_random(1);
//! // Read 1024 pages per vCPU drawn at random (with replacement): memstress's -w 0 -a.
//! vm.set_access(&AccessPattern {
//!     write_percent: Some(0),
//!     random: true,
//!     ..AccessPattern::WRITE_ALL
//! });
//! let reread = vm.run_pass(1, None, &mut |_| {})?;
//! let dirty: u32 = vm.get_dirty_log()?.iter().map(|w| w.count_ones()).sum();
//! assert_eq!(dirty, 0, "reads dirty nothing");
//! // Every page still holds pass 0's value, and no page-tail was touched.
//! let layout = *vm.layout();
//! assert!(layout.verify(vm.memory(), |_, _| 0, 0).ok(layout.total_pages()));
//! let guest = reread.guest.expect("a guest times its passes");
//! println!("fault-in {:?}, re-read {:?} (guest's own clock: {guest:?})", fault_in.total, reread.total);
//! # Ok::<(), tracekit_kvm::Error>(())
//! ```
#![deny(missing_docs)]

pub mod access;
pub mod demand;
pub mod dirty;
pub mod error;
pub mod guest;
pub mod host;
pub mod layout;
pub mod memory;
pub mod options;
pub mod render;
pub mod runner;
pub mod uffd;
pub mod vm;

pub use access::AccessPattern;
pub use demand::{DemandPagingOptions, DemandPagingOutcome, run_demand_paging};
pub use dirty::{DirtyLogOptions, DirtyLogOutcome, run_dirty_log};
pub use error::{Error, Result};
pub use guest::{Privilege, page_value};
pub use host::HostToucher;
pub use layout::{Layout, TEST_GVA, Verification};
pub use memory::{Backing, HostMemory};
pub use options::{CommonOptions, Engine};
pub use runner::{PassTimes, Toucher};
pub use uffd::{COPY_PATTERN, FaultKind, HandlerMode, UffdHandlers, UffdOptions, UffdStats};
pub use vm::{KVM_DEVICE, PerfTestVm, VmOptions, max_vcpus};
