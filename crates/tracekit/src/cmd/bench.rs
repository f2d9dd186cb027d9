//! `tracekit bench`: flags → tracekit_kvm (multi-vCPU memory performance tests) → report,
//! rendered by tracekit_kvm::render or as JSON.

use crate::output::OutputArgs;
use anyhow::bail;
use clap::builder::TypedValueParser as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracekit_core::report::Style;
use tracekit_core::units::{parse_address, parse_cpu_list, parse_size};
use tracekit_kvm::{
    Backing, CommonOptions, DemandPagingOptions, DirtyLogOptions, Engine, FaultKind, HandlerMode,
    Privilege, UffdOptions, render,
};

/// `tracekit bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// How fast the host serves guest page faults (the KVM selftests' demand_paging_test).
    #[command(
        long_about = crate::help::BENCH_DEMAND_PAGING,
        after_help = crate::help::BENCH_DEMAND_PAGING_EXAMPLES
    )]
    DemandPaging(DemandPagingArgs),
    /// Dirty-logging cost: vCPUs dirty memory, the host collects the bitmap (dirty_log_perf_test).
    #[command(
        long_about = crate::help::BENCH_DIRTY_LOG,
        after_help = crate::help::BENCH_DIRTY_LOG_EXAMPLES
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
    #[arg(short = 's', long, default_value = "anonymous", value_parser = backing_parser())]
    backing: Backing,
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
    /// Every vCPU touches the same memory instead of its own slice (the selftests' -o; -o is
    /// tracekit's output file).
    #[arg(long)]
    overlap: bool,
    /// Split the test memory into this many memory slots (the selftests' -x).
    #[arg(short = 'x', long = "memslots", value_name = "N", default_value_t = 1)]
    slots: usize,
    /// Put the test memory at this guest physical address, e.g. 0x100000000 (what the
    /// dirty-log selftest's -p says it does; default: the top of guest physical memory).
    #[arg(short = 'p', long, value_name = "GPA", value_parser = parse_address)]
    gpa: Option<u64>,
    #[command(flatten)]
    out: OutputArgs,
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
    /// With -u: minor faults on shared memory, served by UFFDIO_CONTINUE (the selftest's -u MINOR).
    #[arg(long, requires = "uffd")]
    minor: bool,
    /// With -u: reader threads per userfaultfd.
    #[arg(short = 'r', long, value_name = "N", default_value_t = 1, requires = "uffd", value_parser = clap::value_parser!(u64).range(1..))]
    readers: u64,
    /// With -u: sleep USEC microseconds before serving each fault.
    #[arg(
        short = 'd',
        long = "delay",
        value_name = "USEC",
        default_value_t = 0,
        requires = "uffd"
    )]
    delay_us: u64,
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
    /// Write each access's page with this probability, 0-100 (the selftest's -w; replaces -f).
    #[arg(short = 'w', long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100), conflicts_with = "wr_fract")]
    write_percent: Option<u8>,
    /// Access pages in random order, drawn with replacement as memstress does (the selftest's -a).
    #[arg(short = 'a', long)]
    random_access: bool,
    /// Seed of the guest's random generator (the selftest's -r).
    #[arg(short = 'r', long, value_name = "SEED", default_value_t = 1)]
    seed: u32,
    /// Keep the vCPUs dirtying memory while logging is disabled at the end, to stress the
    /// disabling (the selftest's -e); their extra passes are verified like the rest.
    #[arg(short = 'e', long)]
    dirty_while_disabling: bool,
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
            backing: self.backing,
            cpus: self.cpus.clone().map(|l| l.0),
            kvm_device: self.kvm_device.clone(),
            privilege: if self.supervisor {
                Privilege::Supervisor
            } else {
                Privilege::User
            },
            overlap: self.overlap,
            slots: self.slots,
            gpa: self.gpa,
        }
    }
}

/// A parsed CPU list (a newtype, so clap takes it as one value rather than many).
#[derive(Clone)]
struct CpuList(Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, tracekit_core::units::ParseError> {
    parse_cpu_list(s).map(CpuList)
}

/// The backing names the library knows, parsed into its [`Backing`].
fn backing_parser() -> impl clap::builder::TypedValueParser<Value = Backing> {
    let names = Backing::ALL.map(Backing::name);
    clap::builder::PossibleValuesParser::new(names)
        .map(|name| Backing::from_name(&name).expect("one of the possible values"))
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
        uffd: a.uffd.then(|| uffd_options(&a)),
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

fn uffd_options(a: &DemandPagingArgs) -> UffdOptions {
    let shared = a.shared_handler;
    UffdOptions {
        mode: if shared {
            HandlerMode::Shared
        } else {
            HandlerMode::PerVcpu
        },
        kind: if a.minor {
            FaultKind::Minor
        } else {
            FaultKind::Missing
        },
        readers: a.readers as usize,
        delay: Duration::from_micros(a.delay_us),
    }
}

fn dirty_log(a: DirtyLogArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let options = DirtyLogOptions {
        common: c.options(a.no_kvm),
        iterations: a.iterations,
        wr_fract: a.wr_fract,
        manual_protect: !a.no_manual_protect,
        write_percent: a.write_percent,
        random_access: a.random_access,
        seed: a.seed,
        dirty_while_disabling: a.dirty_while_disabling,
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
    Ok(c.out
        .emit(&c.out.target(), || report, |style| render(report, style))?)
}
