//! The perf-test VM: N vCPUs in 64-bit long mode (4-level paging, 4 KiB guest pages), a low
//! identity-mapped slot with code, arguments and page tables, and the test slot at the top of
//! guest physical memory mapped at [`TEST_GVA`](crate::layout::TEST_GVA).

use crate::access::{AccessPattern, initial_state};
use crate::error::{Error, Result, kvm};
use crate::guest::{self, ARGS_SIZE, PageTables, Privilege, SYNC_BAD_ARGS, SYNC_DONE, args};
use crate::layout::Layout;
use crate::memory::{Backing, HostMemory, PAGE_SIZE};
use crate::runner::{PassTimes, Toucher, run_threads, run_threads_with};
use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES, kvm_clear_dirty_log,
    kvm_clear_dirty_log__bindgen_ty_1, kvm_segment, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tracekit_core::process::Progress;
use tracekit_core::units::human_bytes;

// kvm-ioctls 0.25 has no wrapper for KVM_CLEAR_DIRTY_LOG (_IOWR(KVMIO, 0xc0, ...)).
mod sys {
    use kvm_bindings::kvm_clear_dirty_log;
    nix::ioctl_readwrite!(
        /// KVM_CLEAR_DIRTY_LOG.
        kvm_clear_dirty_log_ioctl,
        0xae,
        0xc0,
        kvm_clear_dirty_log
    );
}

/// Memory slot of the low (system) memory.
const LOW_SLOT: u32 = 0;
/// Memory slot of the test memory (the seed's PERF_TEST_MEM_SLOT_INDEX).
pub const TEST_SLOT: u32 = 1;
const GDT_GPA: u64 = PAGE_SIZE;
const CODE_GPA: u64 = 2 * PAGE_SIZE;
const ARGS_GPA: u64 = 3 * PAGE_SIZE;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// The KVM device opened unless told otherwise.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// The largest number of vCPUs the KVM at `device` accepts in one VM.
pub fn max_vcpus(device: &Path) -> Result<usize> {
    Ok(open_kvm(device)?.get_max_vcpus())
}

/// The number of memory slots the KVM at `device` allows per VM (KVM_CAP_NR_MEMSLOTS).
pub fn max_memslots(device: &Path) -> Result<usize> {
    Ok(open_kvm(device)?.get_nr_memslots())
}

fn open_kvm(device: &Path) -> Result<Kvm> {
    let name = device.display().to_string();
    let path = CString::new(device.as_os_str().as_bytes())
        .map_err(|_| Error::NoKvm(name.clone(), std::io::ErrorKind::InvalidInput.into()))?;
    Kvm::new_with_path(path)
        .map_err(|e| Error::NoKvm(name, std::io::Error::from_raw_os_error(e.errno())))
}

/// Options for [`PerfTestVm::new`].
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The KVM device, normally [`KVM_DEVICE`].
    pub device: PathBuf,
    /// Host backing of the test memory.
    pub backing: Backing,
    /// Enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 when the kernel has it, so that collecting the
    /// dirty log and re-protecting pages (KVM_CLEAR_DIRTY_LOG) are separate steps.
    pub manual_dirty_protect: bool,
    /// Privilege level of the guest loop.
    pub privilege: Privilege,
    /// All vCPUs touch the same memory (the selftests' `-o`).
    pub overlap: bool,
    /// Split the test memory into this many memory slots of equal size (the selftests' `-x`).
    pub slots: usize,
    /// Put the test memory at this guest physical address instead of the top of guest physical
    /// memory; it must be aligned to the backing's page size.
    pub gpa: Option<u64>,
}

impl VmOptions {
    /// Options for `backing` memory on /dev/kvm, without manual dirty-log protection.
    pub fn new(backing: Backing) -> Self {
        VmOptions {
            device: KVM_DEVICE.into(),
            backing,
            manual_dirty_protect: false,
            privilege: Privilege::User,
            overlap: false,
            slots: 1,
            gpa: None,
        }
    }
}

/// A VM built for multi-vCPU memory-touching tests.
pub struct PerfTestVm {
    vm: VmFd,
    vcpus: Vec<VcpuFd>,
    low: HostMemory,
    test: HostMemory,
    layout: Layout,
    test_gpa: u64,
    manual_protect: bool,
    privilege: Privilege,
    /// The guest TSC frequency (KVM_GET_TSC_KHZ), to turn the guest's TSC stamps into time.
    tsc_khz: u32,
    /// Memory slots the test memory is split into (ids TEST_SLOT..).
    slots: u32,
}

impl PerfTestVm {
    /// Creates the VM for `vcpus` vCPUs with `bytes_per_vcpu` of test memory each.
    pub fn new(vcpus: usize, bytes_per_vcpu: u64, options: &VmOptions) -> Result<Self> {
        let kvm_sys = open_kvm(&options.device)?;
        let layout = Layout::with_overlap(
            vcpus,
            bytes_per_vcpu,
            options.backing,
            kvm_sys.get_max_vcpus(),
            options.overlap,
        )?;
        let cpuid = kvm_sys
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let end_gfn = region_end_gfn(cpuid.as_slice());
        let vm = kvm_sys.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
        let manual_protect = options.manual_dirty_protect && enable_manual_protect(&kvm_sys, &vm)?;
        let slots = check_slots(&layout, options.slots, kvm_sys.get_nr_memslots())?;

        let low_bytes = low_pages(&layout) * PAGE_SIZE;
        check_low_memory(&layout, low_bytes)?;
        let test_gpa = match options.gpa {
            Some(gpa) => check_test_gpa(gpa, &layout, end_gfn, low_bytes)?,
            None => test_gpa(&layout, end_gfn, low_bytes)?,
        };
        let low = HostMemory::new(low_bytes, Backing::Anonymous)?;
        let test = HostMemory::new(layout.total_bytes(), options.backing)?;
        let mut this = PerfTestVm {
            vm,
            vcpus: Vec::with_capacity(vcpus),
            low,
            test,
            layout,
            test_gpa,
            manual_protect,
            privilege: options.privilege,
            tsc_khz: 0,
            slots,
        };
        let low_host = this.low.as_ptr() as u64;
        this.set_slot(LOW_SLOT, 0, low_host, this.low.len() as u64, 0)?;
        this.set_test_slots(0)?;
        let cr3 = this.build_low_memory()?;
        for id in 0..vcpus {
            let vcpu = this
                .vm
                .create_vcpu(id as u64)
                .map_err(kvm("KVM_CREATE_VCPU"))?;
            vcpu.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
            setup_long_mode(&vcpu, cr3, id, options.privilege)?;
            this.vcpus.push(vcpu);
        }
        this.tsc_khz = this.vcpus[0]
            .get_tsc_khz()
            .map_err(kvm("KVM_GET_TSC_KHZ"))?;
        Ok(this)
    }

    /// The test memory layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Guest physical address of the test slot.
    pub fn test_gpa(&self) -> u64 {
        self.test_gpa
    }

    /// Whether KVM_CLEAR_DIRTY_LOG is in use (manual dirty-log protection).
    pub fn manual_protect(&self) -> bool {
        self.manual_protect
    }

    /// Sets how many pages out of `wr_fract` the guest writes (1: all; the rest are read).
    pub fn set_wr_fract(&mut self, wr_fract: u64) {
        self.set_access(&AccessPattern {
            wr_fract,
            ..AccessPattern::WRITE_ALL
        });
    }

    /// Sets how the next passes choose and write pages (see [`crate::access`]).
    pub fn set_access(&mut self, pattern: &AccessPattern) {
        let percent = pattern
            .write_percent
            .map_or(guest::BY_WR_FRACT, |p| u64::from(p.min(100)));
        for vcpu in 0..self.layout.vcpus {
            let field = |f| arg_at(vcpu, f);
            self.low
                .write_u64(field(args::WR_FRACT), pattern.wr_fract.max(1));
            self.low.write_u64(field(args::WRITE_PERCENT), percent);
            self.low
                .write_u64(field(args::RANDOM), u64::from(pattern.random));
        }
    }

    /// Seeds every vCPU's random generator as memstress does (`seed + vcpu index`).
    pub fn seed_random(&mut self, seed: u32) {
        for vcpu in 0..self.layout.vcpus {
            self.low
                .write_u64(arg_at(vcpu, args::RAND_STATE), initial_state(seed, vcpu));
        }
    }

    /// Each vCPU's random generator state now (between passes).
    pub fn random_states(&self) -> Vec<u64> {
        (0..self.layout.vcpus)
            .map(|v| self.low.read_u64(arg_at(v, args::RAND_STATE)))
            .collect()
    }

    /// Starts or stops dirty logging on the test slots (safe while the vCPUs run: see
    /// [`PerfTestVm::run_passes_while`]).
    pub fn set_dirty_logging(&self, on: bool) -> Result<()> {
        let flags = if on { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        self.set_test_slots(flags)
    }

    /// Number of memory slots the test memory is split into.
    pub fn test_slots(&self) -> u32 {
        self.slots
    }

    /// Slot `i` of the test memory: its KVM slot id, first page and page count.
    fn test_slot(&self, i: u32) -> (u32, u64, u64) {
        let pages = self.layout.memory_pages() / u64::from(self.slots);
        (TEST_SLOT + i, u64::from(i) * pages, pages)
    }

    fn set_test_slots(&self, flags: u32) -> Result<()> {
        for i in 0..self.slots {
            let (slot, first, pages) = self.test_slot(i);
            let offset = first * PAGE_SIZE;
            let host = self.test.as_ptr() as u64 + offset;
            self.set_slot(slot, self.test_gpa + offset, host, pages * PAGE_SIZE, flags)?;
        }
        Ok(())
    }

    /// KVM_GET_DIRTY_LOG for every test slot, joined into one bitmap: one bit per guest page of
    /// the test memory, vCPU 0's pages first.
    pub fn get_dirty_log(&self) -> Result<Vec<u64>> {
        let mut joined = vec![0u64; self.layout.memory_pages().div_ceil(64) as usize];
        for i in 0..self.slots {
            let (slot, first, pages) = self.test_slot(i);
            let bits = self
                .vm
                .get_dirty_log(slot, (pages * PAGE_SIZE) as usize)
                .map_err(kvm("KVM_GET_DIRTY_LOG"))?;
            for page in (0..pages).filter(|&p| bits[(p / 64) as usize] >> (p % 64) & 1 == 1) {
                let bit = first + page;
                joined[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        Ok(joined)
    }

    /// KVM_CLEAR_DIRTY_LOG for the pages set in `bitmap` (as [`PerfTestVm::get_dirty_log`]
    /// returns it; only with manual protection): write-protects them again so the next writes
    /// are logged, one call per slot.
    pub fn clear_dirty_log(&self, bitmap: &[u64]) -> Result<()> {
        let total = self.layout.memory_pages();
        if (bitmap.len() as u64) * 64 < total {
            return Err(Error::Invalid(format!(
                "KVM_CLEAR_DIRTY_LOG: bitmap of {} words for {total} pages",
                bitmap.len()
            )));
        }
        for i in 0..self.slots {
            let (slot, first, pages) = self.test_slot(i);
            let mut own = vec![0u64; pages.div_ceil(64) as usize];
            for page in 0..pages {
                let bit = first + page;
                own[(page / 64) as usize] |=
                    (bitmap[(bit / 64) as usize] >> (bit % 64) & 1) << (page % 64);
            }
            self.clear_slot_log(slot, &mut own, pages)?;
        }
        Ok(())
    }

    fn clear_slot_log(&self, slot: u32, bitmap: &mut [u64], pages: u64) -> Result<()> {
        let num_pages = u32::try_from(pages)
            .map_err(|_| Error::Invalid("test slot too large for KVM_CLEAR_DIRTY_LOG".into()))?;
        debug_assert!(bitmap.len() as u64 * 64 >= pages);
        let mut clear = kvm_clear_dirty_log {
            slot,
            num_pages,
            first_page: 0,
            __bindgen_anon_1: kvm_clear_dirty_log__bindgen_ty_1 {
                dirty_bitmap: bitmap.as_mut_ptr().cast(),
            },
        };
        // SAFETY: KVM reads `num_pages` bits from `bitmap`, which the caller sized for `pages`
        // bits, and reads/writes only the struct itself.
        unsafe { sys::kvm_clear_dirty_log_ioctl(self.vm.as_raw_fd(), &mut clear) }
            .map_err(|e| kvm("KVM_CLEAR_DIRTY_LOG")(kvm_ioctls::Error::new(e as i32)))?;
        Ok(())
    }

    /// Sets slot `slot` to the `len` bytes of our memory at host address `host`.
    fn set_slot(&self, slot: u32, gpa: u64, host: u64, len: u64, flags: u32) -> Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host,
        };
        // SAFETY: `host..host + len` lies in a live mapping owned by `self` (low or test memory),
        // which also owns the VM; the VM (and so the slot) is dropped before the mapping (field
        // order).
        unsafe { self.vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))
    }

    /// The sync page: identity-mapped right above slot 0, outside every memory slot, so that a
    /// guest store there exits to the host as MMIO.
    fn sync_gpa(&self) -> u64 {
        self.low.len() as u64
    }

    /// Writes GDT, code, per-vCPU arguments and page tables into low memory; returns CR3.
    fn build_low_memory(&self) -> Result<u64> {
        for (i, entry) in guest::GDT.iter().enumerate() {
            self.low
                .write_u64((GDT_GPA + 8 * i as u64) as usize, *entry);
        }
        let code = guest::guest_code(CODE_GPA)
            .map_err(|e| Error::Invalid(format!("assembling guest code: {e}")))?;
        self.low.write_bytes(CODE_GPA as usize, &code);
        for vcpu in 0..self.layout.vcpus {
            let fields = [
                (args::GVA, self.layout.page_gva(vcpu, 0)),
                (args::PAGES, self.layout.pages_per_vcpu),
                (args::PAGE_SIZE, self.layout.guest_page_size),
                (args::ITERATION, 0),
                (args::WR_FRACT, 1),
                (args::VCPU_ID, vcpu as u64),
                (args::SYNC, self.sync_gpa()),
                (args::WRITE_PERCENT, guest::BY_WR_FRACT),
            ];
            for (field, value) in fields {
                self.low.write_u64(arg_at(vcpu, field), value);
            }
        }
        let tables_start = ARGS_GPA + args_pages(&self.layout) * PAGE_SIZE;
        let user = self.privilege == Privilege::User;
        let mut pt = PageTables::new(&self.low, tables_start, self.low.len() as u64, user);
        let low_pages = self.low.len() as u64 / PAGE_SIZE;
        // Identity-map low memory except page 0 (so a null pointer in the guest faults) and the
        // sync page just above it, which no memory slot backs.
        let ok = pt.map(PAGE_SIZE, PAGE_SIZE, low_pages)
            && pt.map(self.layout.gva, self.test_gpa, self.layout.memory_pages());
        if !ok {
            return Err(Error::Invalid(
                "internal error: guest page-table area too small; please report".into(),
            ));
        }
        Ok(pt.root)
    }
}

impl Toucher for PerfTestVm {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn memory(&self) -> &HostMemory {
        &self.test
    }

    fn test_gpa(&self) -> Option<u64> {
        Some(self.test_gpa)
    }

    fn run_pass(
        &mut self,
        iteration: u64,
        cpus: Option<&[usize]>,
        tick: Progress,
    ) -> Result<PassTimes> {
        self.start_pass(iteration);
        let sync_gpa = self.sync_gpa();
        let mut vcpus = std::mem::take(&mut self.vcpus);
        let work = vcpus
            .iter_mut()
            .enumerate()
            .map(|(i, vcpu)| move || run_to_sync(vcpu, i, sync_gpa))
            .collect();
        let run = run_threads(work, cpus, &|| self.pages_done(), tick);
        self.vcpus = vcpus;
        let mut times = run?;
        times.guest = Some(self.guest_times());
        Ok(times)
    }
}

impl PerfTestVm {
    /// Runs pass `iteration` again and again on every vCPU while `host` runs on the calling
    /// thread: dirty_log_perf_test's `-e`, where the vCPUs keep dirtying memory for the whole
    /// time the host disables dirty logging. `host` starts once every vCPU thread has begun its
    /// first pass; when it returns (or panics), each vCPU finishes the pass it is in. Returns
    /// the passes each vCPU completed (at least one) and what `host` returned.
    pub fn run_passes_while<R>(
        &mut self,
        iteration: u64,
        cpus: Option<&[usize]>,
        host: impl FnOnce(&PerfTestVm) -> Result<R>,
    ) -> Result<(Vec<u64>, R)> {
        let n = self.layout.vcpus;
        self.start_pass(iteration);
        let sync_gpa = self.sync_gpa();
        // The vCPUs leave `self` for the run so that `host` can use the VM beside them.
        let mut vcpus = std::mem::take(&mut self.vcpus);
        let stop = AtomicBool::new(false);
        let passes: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        let this = &*self;
        let work = vcpus
            .iter_mut()
            .enumerate()
            .map(|(i, vcpu)| {
                let (stop, passes) = (&stop, &passes);
                move || {
                    loop {
                        run_to_sync(vcpu, i, sync_gpa)?;
                        passes[i].fetch_add(1, Ordering::SeqCst);
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                    }
                }
            })
            .collect();
        let run = run_threads_with(work, cpus, &|| this.pages_done(), &mut |_| {}, || {
            // Stops the vCPUs however `host` ends, a panic included: they are joined next.
            let _stop = StopOnDrop(&stop);
            host(this)
        });
        self.vcpus = vcpus;
        let (_, hosted) = run?;
        Ok((
            passes.into_iter().map(AtomicU64::into_inner).collect(),
            hosted,
        ))
    }

    /// Tells every vCPU the next pass's iteration and zeroes its count of pages done.
    fn start_pass(&mut self, iteration: u64) {
        for vcpu in 0..self.layout.vcpus {
            self.low.write_u64(arg_at(vcpu, args::ITERATION), iteration);
            self.low.write_u64(arg_at(vcpu, args::DONE), 0);
        }
    }

    /// Pages the vCPUs have visited in their current pass, as they count them.
    fn pages_done(&self) -> u64 {
        (0..self.layout.vcpus)
            .map(|v| self.low.read_u64(arg_at(v, args::DONE)))
            .sum()
    }

    /// Each vCPU's last pass as the guest timed it with its TSC.
    fn guest_times(&self) -> Vec<Duration> {
        let khz = u128::from(self.tsc_khz.max(1));
        (0..self.layout.vcpus)
            .map(|v| {
                let start = self.low.read_u64(arg_at(v, args::TSC_START));
                let end = self.low.read_u64(arg_at(v, args::TSC_END));
                // cycles / kHz = ms; scaled to ns in 128 bits so nothing overflows.
                let ns = u128::from(end.wrapping_sub(start)) * 1_000_000 / khz;
                Duration::from_nanos(ns as u64)
            })
            .collect()
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn run_to_sync(vcpu: &mut VcpuFd, index: usize, sync_gpa: u64) -> Result<()> {
    loop {
        let exit = match vcpu.run() {
            Ok(VcpuExit::MmioWrite(addr, data)) if addr == sync_gpa => match data.first() {
                Some(&SYNC_DONE) => return Ok(()),
                Some(&SYNC_BAD_ARGS) => "the guest found another vCPU's argument block".to_owned(),
                other => format!("unknown sync code {other:?}"),
            },
            Ok(VcpuExit::Shutdown) => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or_default();
                format!("guest triple fault (KVM_EXIT_SHUTDOWN) near RIP {rip:#x}")
            }
            Ok(other) => format!("{other:?}"),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Err(kvm("KVM_RUN")(e)),
        };
        return Err(Error::GuestExit { vcpu: index, exit });
    }
}

fn enable_manual_protect(kvm_sys: &Kvm, vm: &VmFd) -> Result<bool> {
    let cap = kvm_bindings::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
    let supported = kvm_sys.check_extension_raw(cap.into());
    let wanted = u64::from(kvm_bindings::KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
    if supported < 0 || (supported as u64) & wanted == 0 {
        return Ok(false);
    }
    let mut enable = kvm_bindings::kvm_enable_cap {
        cap,
        ..Default::default()
    };
    enable.args[0] = wanted;
    vm.enable_cap(&enable)
        .map_err(kvm("KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)"))?;
    Ok(true)
}

/// Checks a memslot count: at least 1, each slot a whole number of host pages, and with the
/// low-memory slot no more than KVM's KVM_CAP_NR_MEMSLOTS.
fn check_slots(layout: &Layout, slots: usize, kvm_slots: usize) -> Result<u32> {
    let allowed = kvm_slots.saturating_sub(1);
    if slots == 0 || slots > allowed {
        return Err(Error::Invalid(format!(
            "{slots} memslots requested; KVM allows {kvm_slots} per VM and the guest's code and \
             page tables take one: choose between 1 and {allowed}"
        )));
    }
    let unit = slots as u64 * layout.host_page_size;
    if !layout.total_bytes().is_multiple_of(unit) {
        return Err(Error::Invalid(format!(
            "{} bytes of test memory do not split into {slots} memslots of whole {}-byte pages",
            layout.total_bytes(),
            layout.host_page_size
        )));
    }
    Ok(slots as u32)
}

fn arg_at(vcpu: usize, field: u64) -> usize {
    (ARGS_GPA + vcpu as u64 * ARGS_SIZE + field) as usize
}

fn args_pages(layout: &Layout) -> u64 {
    (layout.vcpus as u64 * ARGS_SIZE).div_ceil(PAGE_SIZE)
}

/// Pages of low memory: null page, GDT, code, arguments, then page tables for the test region
/// and for low memory itself (solved by iterating, since the tables map themselves).
fn low_pages(layout: &Layout) -> u64 {
    let fixed = 3 + args_pages(layout) + 1; // + PML4
    let test_tables = guest::table_pages_for(layout.memory_pages());
    let mut pages = fixed + test_tables;
    loop {
        // + 1: the sync page mapped right above low memory.
        let next = fixed + test_tables + guest::table_pages_for(pages + 1);
        if next <= pages {
            return pages;
        }
        pages = next;
    }
}

/// Start of AMD's reserved HyperTransport range (1012 GiB): guests cannot use GPAs there.
const AMD_HT_START: u64 = 0xfd_0000_0000;

/// One past the last usable guest frame: from the guest physical-address width KVM supports
/// (CPUID 0x80000008 EAX[23:16] "GuestPhysBits" when the kernel reports it, which accounts for
/// a TDP with fewer levels than the host, else EAX[7:0]), kept below the HyperTransport hole on
/// AMD hosts, as the KVM selftests do.
fn region_end_gfn(cpuid: &[kvm_bindings::kvm_cpuid_entry2]) -> u64 {
    let leaf = |f: u32| cpuid.iter().find(|e| e.function == f);
    let bits = leaf(0x8000_0008).map_or(36, |e| match (e.eax >> 16) & 0xff {
        0 => e.eax & 0xff,
        guest => guest,
    });
    let mut end = 1u64 << bits.clamp(32, 52);
    let amd =
        leaf(0).is_some_and(|e| (e.ebx, e.edx, e.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163));
    if amd {
        end = end.min(AMD_HT_START);
    }
    end / PAGE_SIZE
}

/// Places the test slot at the top of guest physical memory, aligned down to the backing's
/// page size, as the seed does; refuses a region that would not fit above low memory.
fn test_gpa(layout: &Layout, region_end_gfn: u64, low_bytes: u64) -> Result<u64> {
    let pages = layout.memory_pages();
    let low_gfns = low_bytes / PAGE_SIZE + layout.host_page_size / PAGE_SIZE;
    if pages + 1 + low_gfns > region_end_gfn {
        return Err(Error::TooMuchMemory {
            pages,
            space: "guest physical address space",
            limit: region_end_gfn.saturating_sub(1 + low_gfns),
        });
    }
    let gpa = (region_end_gfn - pages - 1) * PAGE_SIZE;
    Ok(gpa & !(layout.host_page_size - 1))
}

/// Checks a test-memory address the user chose: aligned to the backing's page size, above low
/// memory and its sync page, and with all the test memory below the end of guest physical
/// memory.
fn check_test_gpa(gpa: u64, layout: &Layout, region_end_gfn: u64, low_bytes: u64) -> Result<u64> {
    let align = layout.host_page_size;
    let lowest = (low_bytes + PAGE_SIZE).next_multiple_of(align);
    let end = region_end_gfn * PAGE_SIZE;
    let highest = end.saturating_sub(layout.total_bytes()) / align * align;
    let size = human_bytes(layout.total_bytes());
    if highest < lowest {
        return Err(Error::Invalid(format!(
            "the {size} of test memory do not fit in guest physical memory above the guest's \
             low memory ({lowest:#x} to {end:#x}); give less memory (-b, -v)"
        )));
    }
    let problem = if !gpa.is_multiple_of(align) {
        format!(
            "is not a multiple of the backing's {} KiB page",
            align >> 10
        )
    } else if gpa < lowest {
        format!("overlaps the guest's low memory (code, arguments, page tables: below {lowest:#x})")
    } else if gpa > highest {
        format!("puts the {size} of test memory past the end of guest physical memory ({end:#x})")
    } else {
        return Ok(gpa);
    };
    Err(Error::Invalid(format!(
        "test memory at GPA {gpa:#x} {problem}; choose an address from {lowest:#x} to \
         {highest:#x} that is a multiple of {align:#x}, or leave --gpa out for the top of guest \
         physical memory"
    )))
}

/// Refuses low memory (code, arguments, page tables) that would reach the test memory's guest
/// virtual addresses, which it identity-maps.
fn check_low_memory(layout: &Layout, low_bytes: u64) -> Result<()> {
    if low_bytes + PAGE_SIZE >= layout.gva {
        return Err(Error::TooMuchMemory {
            pages: layout.memory_pages(),
            space: "identity-mapped low memory (page tables)",
            limit: 0,
        });
    }
    Ok(())
}

fn setup_long_mode(vcpu: &VcpuFd, cr3: u64, id: usize, privilege: Privilege) -> Result<()> {
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let segment = |selector: u16, type_: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let (code, data, dpl) = match privilege {
        Privilege::Supervisor => (guest::CODE_SELECTOR, guest::DATA_SELECTOR, 0),
        Privilege::User => (guest::USER_CODE_SELECTOR, guest::USER_DATA_SELECTOR, 3),
    };
    sregs.cs = kvm_segment {
        dpl,
        l: 1,
        db: 0,
        ..segment(code, 0xb)
    };
    let data = kvm_segment {
        dpl,
        ..segment(data, 0x3)
    };
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    // VM entry in long mode wants a busy 64-bit TSS in TR even though nothing uses it.
    sregs.tr = kvm_segment {
        base: 0,
        limit: 0x67,
        selector: 0x28,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = (guest::GDT.len() * 8 - 1) as u16;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: CODE_GPA,
        rflags: 2,
        rdi: ARGS_GPA + id as u64 * ARGS_SIZE,
        rsi: id as u64,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Toucher;

    #[test]
    fn test_slot_sits_at_the_top_of_guest_physical_memory() {
        let layout = Layout::new(2, 4 << 20, Backing::Anonymous, 8).unwrap();
        let low = low_pages(&layout) * PAGE_SIZE;
        // 2048 pages below the last gfn of a 40-bit space.
        assert_eq!(
            test_gpa(&layout, 1 << 28, low).unwrap(),
            (1u64 << 40) - 2049 * PAGE_SIZE
        );
        let huge = Layout::new(2, 4 << 20, Backing::Hugetlb, 8).unwrap();
        assert_eq!(test_gpa(&huge, 1 << 28, low).unwrap() % (2 << 20), 0);
        // 8 MiB does not fit a 20-bit (1 MiB) guest physical space.
        assert!(matches!(
            test_gpa(&layout, 1 << 8, low),
            Err(Error::TooMuchMemory { .. })
        ));
    }

    #[test]
    fn guest_physical_width_comes_from_cpuid() {
        let entry = |function, eax, ebx, ecx, edx| kvm_bindings::kvm_cpuid_entry2 {
            function,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        };
        let intel = entry(0, 0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69);
        let amd = entry(0, 0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65);
        // 48 host bits, no GuestPhysBits: 2^36 frames.
        assert_eq!(
            region_end_gfn(&[intel, entry(0x8000_0008, 0x3030, 0, 0, 0)]),
            1 << 36
        );
        // 52 host bits, but the TDP maps only 48 (GuestPhysBits = 48).
        assert_eq!(
            region_end_gfn(&[intel, entry(0x8000_0008, 0x30_3034, 0, 0, 0)]),
            1 << 36
        );
        // AMD: stay below the HyperTransport hole.
        assert_eq!(
            region_end_gfn(&[amd, entry(0x8000_0008, 0x3030, 0, 0, 0)]),
            AMD_HT_START / PAGE_SIZE
        );
        assert_eq!(region_end_gfn(&[]), 1 << 24);
    }

    #[test]
    fn low_memory_holds_the_page_tables() {
        let layout = Layout::new(4, 64 << 20, Backing::Anonymous, 8).unwrap();
        let pages = low_pages(&layout);
        let tables =
            guest::table_pages_for(layout.total_pages()) + guest::table_pages_for(pages) + 1;
        assert!(pages >= 3 + args_pages(&layout) + tables);
    }

    #[test]
    fn guest_checks_its_argument_block() {
        let mut vm = PerfTestVm::new(2, 1 << 20, &VmOptions::new(Backing::Anonymous)).unwrap();
        vm.low.write_u64(arg_at(1, args::VCPU_ID), 0);
        let err = vm.run_pass(0, None, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, Error::GuestExit { vcpu: 1, exit } if exit.contains("another vCPU's argument block")),
            "{err}"
        );
    }

    #[test]
    fn passes_repeat_with_new_iteration_values() {
        let mut vm = PerfTestVm::new(1, 1 << 20, &VmOptions::new(Backing::Anonymous)).unwrap();
        for iteration in [0, 1, 7] {
            vm.run_pass(iteration, None, &mut |_| {}).unwrap();
            assert!(vm.layout().verify(vm.memory(), |_, _| iteration, 0).ok(256));
        }
    }
}
