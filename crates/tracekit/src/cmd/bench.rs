//! `tracekit bench`: flags → tracekit_kvm (multi-vCPU memory performance tests) → report,
//! rendered by tracekit_kvm::render or as JSON.

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use tracekit_core::report::{OutputTarget, Style};
use tracekit_core::units::{parse_cpu_list, parse_size};
use tracekit_kvm::{
    Backing, CommonOptions, DemandPagingOptions, DirtyLogOptions, Engine, HandlerMode, Privilege,
    render,
};

/// `tracekit bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// How fast the host serves guest page faults (the KVM selftests' demand_paging_test).
    #[command(
        long_about = "Demand-paging test (the KVM selftests' demand_paging_test, on tracekit's perf-test \
library). A VM with VCPUS vCPUs in 64-bit long mode (the test loop at CPL 3; --supervisor for CPL 0) gets BYTES of fresh, never-touched test memory \
per vCPU at the top of guest physical memory; each vCPU writes the first 8 bytes of every 4 KiB page \
of its slice once, so every write is a page fault served by the host: by the kernel, or with -u by \
userfaultfd handler threads doing UFFDIO_COPY (one per vCPU, or one for all with -a).\n\n\
Prints each vCPU's time, the total time and the demand-paging rate (pages/sec = all pages / total \
time). After the run every page is checked: its first 8 bytes must hold what the guest wrote and, \
with -u, the rest what the handler copied; `verified` is true only when all pages passed, otherwise \
the exit status is 1.\n\n\
--no-kvm runs the same pattern from host threads instead of vCPUs: the floor the guest numbers \
compare with (plain first-touch faults, or with -u the UFFDIO_COPY rate), and a test for machines \
without /dev/kvm.\n\n\
-c pins vCPU i (and its handler) to the i-th CPU of the list; without it the scheduler may put a \
faulting vCPU and its handler on different CPUs, which is several times slower and bimodal.",
        after_help = "Examples:\n  \
tracekit bench demand-paging -v 2 -b 256M\n  \
tracekit bench demand-paging -v 2 -b 256M -u -c 0,1\n  \
tracekit bench demand-paging -v 2 -b 256M -u -a            # one shared handler\n  \
tracekit bench demand-paging -v 2 -b 256M --no-kvm -u      # host floor: UFFDIO_COPY rate\n  \
tracekit bench demand-paging -b 64M --json -o dp.json"
    )]
    DemandPaging(DemandPagingArgs),
    /// Dirty-logging cost: vCPUs dirty memory, the host collects the bitmap (dirty_log_perf_test).
    #[command(
        long_about = "Dirty-logging test (the KVM selftests' dirty_log_perf_test, on the same library as \
demand-paging). The vCPUs first populate their memory, then dirty logging is enabled on the test \
slot, and each of ITERATIONS iterations lets every vCPU write its pages again (one in WR_FRACT with \
-f, reading the others) while the host then collects the dirty bitmap with KVM_GET_DIRTY_LOG and, \
when the kernel has KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (disable with -g), re-protects with \
KVM_CLEAR_DIRTY_LOG.\n\n\
Reports the populate time, per-iteration dirtying time (per vCPU and total) and collection times, \
and checks that each bitmap is exactly the pages written and that the memory holds the last \
iteration's values; the exit status is 1 otherwise.\n\n\
--no-kvm dirties the same pages from host threads (no dirty log to collect): the floor for the \
dirtying time, and a test for machines without /dev/kvm.",
        after_help = "Examples:\n  \
tracekit bench dirty-log -v 2 -b 256M -i 5\n  \
tracekit bench dirty-log -v 1 -b 64M -i 3 -f 2        # write every other page\n  \
tracekit bench dirty-log -b 64M -g --json              # KVM_GET_DIRTY_LOG only\n  \
tracekit bench dirty-log -v 2 -b 256M -i 5 --no-kvm    # host floor"
    )]
    DirtyLog(DirtyLogArgs),
}

/// Flags shared by the tests.
#[derive(Args)]
pub struct CommonArgs {
    /// Number of vCPUs (host threads with --no-kvm).
    #[arg(short = 'v', long, value_name = "VCPUS", default_value_t = 1)]
    vcpus: usize,
    /// Test memory per vCPU, e.g. 256M or 1G (a multiple of the page size).
    #[arg(short = 'b', long = "bytes", value_name = "BYTES", value_parser = parse_size, default_value = "1G")]
    bytes_per_vcpu: u64,
    /// Host memory backing the test memory.
    #[arg(short = 's', long, value_enum, default_value_t = BackingArg::Anonymous)]
    backing: BackingArg,
    /// Pin vCPU i to the i-th CPU of the list, e.g. 0,1 or 0-3 (demand-paging -u: its
    /// userfaultfd handler too).
    #[arg(short = 'c', long = "cpus", value_name = "CPU_LIST", value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// KVM device to open.
    #[arg(long, value_name = "PATH", default_value = tracekit_kvm::KVM_DEVICE)]
    kvm_device: PathBuf,
    /// Run the guest loop in supervisor mode (CPL 0, like the seed) instead of user mode (CPL 3).
    /// On PVM (software-virtualized KVM) every supervisor-mode instruction is emulated.
    #[arg(long)]
    supervisor: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `tracekit bench demand-paging`
#[derive(Args)]
pub struct DemandPagingArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Serve the faults with userfaultfd (UFFDIO_COPY), one handler thread per vCPU.
    #[arg(short = 'u', long)]
    uffd: bool,
    /// With -u: one userfaultfd and one handler thread for all vCPUs.
    #[arg(short = 'a', long, requires = "uffd")]
    shared_handler: bool,
    /// Touch the memory from host threads instead of vCPUs (no /dev/kvm needed; the floor).
    #[arg(long)]
    no_kvm: bool,
}

/// `tracekit bench dirty-log`
#[derive(Args)]
pub struct DirtyLogArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Dirty-and-collect iterations after the populate pass.
    #[arg(short = 'i', long, value_name = "ITERATIONS", default_value_t = 2)]
    iterations: u64,
    /// Write one page in WR_FRACT per iteration (read the others).
    #[arg(short = 'f', long, value_name = "WR_FRACT", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    wr_fract: u64,
    /// Do not use KVM_CLEAR_DIRTY_LOG (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
    #[arg(short = 'g', long)]
    no_manual_protect: bool,
    /// Dirty the memory from host threads instead of vCPUs (no log; the floor for dirtying).
    #[arg(long)]
    no_kvm: bool,
}

impl CommonArgs {
    /// Guest pages in all, for the progress bar.
    fn total_pages(&self) -> u64 {
        self.bytes_per_vcpu / 4096 * self.vcpus as u64
    }

    /// The library's options; `no_kvm` is each subcommand's own flag (their help differs).
    fn options(&self, no_kvm: bool) -> CommonOptions {
        CommonOptions {
            engine: if no_kvm { Engine::Host } else { Engine::Kvm },
            vcpus: self.vcpus,
            bytes_per_vcpu: self.bytes_per_vcpu,
            backing: self.backing.into(),
            cpus: self.cpus.clone().map(|l| l.0),
            kvm_device: self.kvm_device.clone(),
            privilege: if self.supervisor {
                Privilege::Supervisor
            } else {
                Privilege::User
            },
        }
    }
}

/// A parsed CPU list (a newtype, so clap takes it as one value rather than many).
#[derive(Clone)]
struct CpuList(Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, tracekit_core::units::ParseError> {
    parse_cpu_list(s).map(CpuList)
}

#[derive(Clone, Copy, ValueEnum)]
enum BackingArg {
    Anonymous,
    Shared,
    Hugetlb,
}

impl From<BackingArg> for Backing {
    fn from(b: BackingArg) -> Self {
        match b {
            BackingArg::Anonymous => Backing::Anonymous,
            BackingArg::Shared => Backing::Shared,
            BackingArg::Hugetlb => Backing::Hugetlb,
        }
    }
}

/// Runs a `tracekit bench` subcommand.
pub fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    match c {
        BenchCommand::DemandPaging(a) => demand_paging(a),
        BenchCommand::DirtyLog(a) => dirty_log(a),
    }
}

fn demand_paging(a: DemandPagingArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let options = DemandPagingOptions {
        common: c.options(a.no_kvm),
        uffd: a.uffd.then_some(if a.shared_handler {
            HandlerMode::Shared
        } else {
            HandlerMode::PerVcpu
        }),
    };
    let bar = crate::progress::bar(c.total_pages(), 0, "pages", true);
    let report = tracekit_kvm::run_demand_paging(&options, &mut |pages| bar.set_position(pages));
    bar.finish_and_clear();
    let report = report?;
    write(c, &report, render::demand_paging)?;
    if let Some(err) = report.verification_error() {
        bail!(err);
    }
    Ok(ExitCode::SUCCESS)
}

fn dirty_log(a: DirtyLogArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let options = DirtyLogOptions {
        common: c.options(a.no_kvm),
        iterations: a.iterations,
        wr_fract: a.wr_fract,
        manual_protect: !a.no_manual_protect,
    };
    // The populate pass and every iteration each visit all pages.
    let passes = a.iterations + 1;
    let bar = crate::progress::bar(c.total_pages().saturating_mul(passes), 0, "pages", true);
    let report = tracekit_kvm::run_dirty_log(&options, &mut |pages| bar.set_position(pages));
    bar.finish_and_clear();
    let report = report?;
    write(c, &report, render::dirty_log)?;
    if let Some(err) = report.verification_error() {
        bail!(err);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the report where -o says, as JSON with --json, else as the library renders it.
fn write<R: Serialize>(
    c: &CommonArgs,
    report: &R,
    render: fn(&R, Style) -> String,
) -> anyhow::Result<()> {
    let target = OutputTarget::new(c.output.as_deref());
    if c.json {
        target.write_json(report)?;
    } else {
        target.write(&render(report, target.style()))?;
    }
    Ok(())
}
