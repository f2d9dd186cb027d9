//! The `tracekit` command: flags → library calls → report. All the work is in the library
//! crates; this crate only parses the command line and turns errors into advice.

mod args;
mod cmd;
mod help;
mod output;
mod progress;
mod stop;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status for an error in tracekit itself (bad input, kernel refused, ...).
/// Usage errors exit with 2 (clap's convention); a traced command's own status is passed through.
const EXIT_FAILURE: u8 = 1;

#[derive(Parser)]
#[command(
    name = "tracekit",
    version,
    about = "Tracing and performance testing for Linux, on BPF and KVM",
    long_about = "Tracing and performance testing for Linux, on BPF and KVM.\n\n\
        Each subcommand replaces a familiar tool: `trace summary` for `perf trace -s` and \
        `strace -c`, `probe` for bpftrace uprobes and ltrace, `prog` for `bpftool prog run`, \
        `bench` for the KVM selftests' memory performance tests.\n\n\
        Every report takes --json and -o/--output FILE.",
    after_help = "Examples:\n  \
        tracekit trace summary -- make -j2\n  \
        tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --data-hex 00..\n  \
        tracekit bench demand-paging -v 2 -b 256M -u\n  \
        tracekit probe /bin/bash:readline -p 1234"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trace system calls (see `tracekit trace summary --help`).
    #[command(subcommand)]
    Trace(cmd::trace::TraceCommand),
    /// Dynamic probes on user functions, with BPF uprobes or tracekit's ptrace engine.
    Probe(cmd::probe::ProbeArgs),
    /// Load a BPF object and test-run its programs (BPF_PROG_TEST_RUN).
    #[command(subcommand)]
    Prog(cmd::prog::ProgCommand),
    /// KVM multi-vCPU memory performance tests.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Serve the in-kernel syscall statistics as Prometheus metrics.
    Exporter(cmd::exporter::ExporterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(c) => cmd::trace::run(c),
        Command::Probe(a) => cmd::probe::run(a),
        Command::Prog(c) => cmd::prog::run(c),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Exporter(a) => cmd::exporter::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tracekit: error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
