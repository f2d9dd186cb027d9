//! `tracekit exporter`: flags → tracekit_exporter.

use crate::cmd::trace::FilterArgs;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use tracekit_exporter::{By, Options};

#[derive(Clone, Copy, ValueEnum)]
enum ByArg {
    None,
    Comm,
    Cgroup,
    Process,
}

/// Arguments of `tracekit exporter`.
#[derive(Args)]
#[command(
    long_about = "Serves the syscall statistics that `trace summary` measures in the kernel as \
Prometheus metrics on /metrics (Prometheus text format, or OpenMetrics when the scraper asks for \
it): tracekit_syscall_duration_seconds (a histogram; its _count is the number of calls), \
tracekit_syscall_errors_total{syscall,errno}, tracekit_dropped_total{cause}, \
tracekit_series_dropped_total, tracekit_scrape_duration_seconds and tracekit_build_info.\n\n\
Nothing runs on a timer: each scrape reads the kernel's cumulative per-CPU maps, so the counters \
are exact and monotonic. The whole system is traced unless -p is given; the filters of \
`trace summary` (-e, --failed, -u, --cgroup) apply in the kernel. --by adds labels: comm, cgroup, \
or pid and comm; --max-series caps the (group, syscall) series, folding the rest into `other`.\n\n\
It listens on 127.0.0.1:9464 unless told otherwise. SIGTERM or Ctrl-C detach and exit 0.",
    after_help = "Examples:\n  \
tracekit exporter                                   # 127.0.0.1:9464, whole system\n  \
tracekit exporter --by cgroup --listen 0.0.0.0:9464 # per cgroup, every interface\n  \
tracekit exporter -p 1234 -e '%net' --by process    # one service's network calls\n\n\
Prometheus: scrape_configs: [{job_name: tracekit, static_configs: [{targets: ['HOST:9464']}]}]"
)]
pub struct ExporterArgs {
    /// Address and port to serve /metrics on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    listen: String,
    /// Labels that split the series besides `syscall`.
    #[arg(long, value_enum, default_value = "none")]
    by: ByArg,
    /// Trace only these processes (and their children); default: the whole system.
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',')]
    pids: Vec<u32>,
    #[command(flatten)]
    filters: FilterArgs,
    /// The most (group, syscall) series to export; the rest are folded into `other`.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_series: usize,
    /// Also export a user probe (repeatable): hits, and for uretprobe: the function's
    /// duration histogram. Specs as `tracekit probe` takes them (uprobe:BINARY:FUNC).
    #[arg(long = "probe", value_name = "SPEC")]
    probes: Vec<String>,
    /// Stop exporting a series whose calls have not changed for SECS (an exited process), and
    /// give its place under --max-series to a new one.
    #[arg(long, value_name = "SECS")]
    expire: Option<f64>,
}

/// Runs the exporter until SIGTERM or Ctrl-C.
pub fn run(args: ExporterArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = args.listen.parse().map_err(|e| {
        anyhow::anyhow!(
            "--listen {}: {e} (give ADDR:PORT, e.g. 127.0.0.1:9464 or [::1]:9464)",
            args.listen
        )
    })?;
    for &pid in &args.pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            anyhow::bail!("no such process: {pid}\n  hint: check the pid with `ps -p {pid}`");
        }
    }
    let options = Options {
        listen,
        by: match args.by {
            ByArg::None => By::None,
            ByArg::Comm => By::Comm,
            ByArg::Cgroup => By::Cgroup,
            ByArg::Process => By::Process,
        },
        summary: args.filters.apply(tracekit_summary::Options::default())?,
        pids: args.pids,
        max_series: args.max_series,
        probes: args.probes,
        expire: args
            .expire
            .map(|secs| {
                std::time::Duration::try_from_secs_f64(secs)
                    .map_err(|_| anyhow::anyhow!("--expire must be a positive number of seconds"))
            })
            .transpose()?,
    };
    let stop = crate::stop::flag_without_escape()?;
    // SIGHUP reloads nothing, and must not end a daemon: it only sets a flag nobody reads.
    signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    )?;
    let mut exporter = tracekit_exporter::Exporter::start(&options)?;
    if let Some(addr) = exporter.local_addr() {
        eprintln!("tracekit: serving metrics on http://{addr}/metrics");
    }
    exporter.serve(&stop)?;
    Ok(ExitCode::SUCCESS)
}
