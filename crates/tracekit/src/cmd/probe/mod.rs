//! `tracekit probe`: function probes with BPF uprobes or tracekit's own ptrace engine.
//! Maps flags to `tracekit_probe` calls, chooses the engine (and falls back), and says where
//! the output goes; the engines and the reports are in the library.

mod engine;
mod sink;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tracekit_probe::bpf;
use tracekit_probe::{
    Intervals, Lookup, MAX_PROBES, ProbeKind, ProbeSpec, Target, render, resolve_specs,
};

use crate::output::OutputArgs;
pub use engine::Engine;
use engine::{Place, place, run_engine};

/// Arguments of `tracekit probe`.
#[derive(clap::Args)]
// The subcommand's doc comment in main.rs sets about/long_about, so the teaching text goes
// after the options.
#[command(
    after_help = crate::help::PROBE_EXAMPLES,
    after_long_help = crate::help::PROBE
)]
pub struct ProbeArgs {
    /// Probe specs (forms in --help); each gives one line of the report (the short form two).
    #[arg(required_unless_present = "list", value_name = "SPEC")]
    specs: Vec<String>,
    /// List the functions of BINARY (matching PATTERN) that could be probed, with their
    /// first instruction and which engine can take it, and BINARY's USDT probes
    /// (`usdt:BINARY[:PATTERN]`: only those); probes nothing.
    #[arg(long, value_name = "BINARY[:PATTERN]", conflicts_with_all = ["specs", "command", "target"])]
    list: Option<String>,
    /// The most probes one pattern may become.
    #[arg(long, value_name = "N", default_value_t = MAX_PROBES)]
    max_probes: usize,
    /// Trace this running process (all its threads) until it exits or Ctrl-C.
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pid: Option<u32>,
    /// Probe engine: bpf, ptrace, jump (ptrace placing jumps to counting trampolines: no trap
    /// per hit), or auto (bpf, falling back to ptrace when bpf is refused).
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    engine: Engine,
    /// Print every hit as it happens (arguments at entry; return value and latency at return).
    #[arg(long)]
    print: bool,
    /// Print a report every SECS seconds with the hits of that interval (with --json: one
    /// JSON document per line); the last, partial interval is printed at the end.
    #[arg(short, long, value_name = "SECS", conflicts_with = "target")]
    interval: Option<f64>,
    /// Also break hits and latencies down per thread.
    #[arg(long, value_enum, default_value_t = By::Probe, conflicts_with = "target")]
    by: By,
    /// With --by thread, the BPF engine's capacity in (probe, thread) pairs; hits of further
    /// threads are counted as unattributed, never dropped silently.
    #[arg(long, value_name = "N", default_value_t = tracekit_probe::bpf::MAX_THREAD_ENTRIES, value_parser = clap::value_parser!(u32).range(1..))]
    max_threads: u32,
    /// How many integer arguments --print shows (0-6); by default a function's parameters,
    /// named and typed, when its binary has DWARF debug information, otherwise 3 registers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=6))]
    args: Option<u8>,
    #[command(flatten)]
    out: OutputArgs,
    /// Probe a LoongArch64 program waiting under `qemu-loongarch64-static -g PORT` through
    /// QEMU's gdb stub: `qemu-gdb:HOST:PORT` (tracekit's breakpoint engine; no -p or command).
    #[arg(long, value_name = "qemu-gdb:HOST:PORT", conflicts_with_all = ["pid", "command", "pin_cpu", "follow_forks"])]
    target: Option<String>,
    /// ptrace engine: pin tracer and tracee to this CPU (a stop then costs a context switch
    /// instead of a cross-CPU wake-up).
    #[arg(long, value_name = "CPU")]
    pin_cpu: Option<usize>,
    /// ptrace engine: also probe the processes the target forks (by default a forked child
    /// gets its breakpoints removed and runs unprobed; the BPF engine counts only the target).
    #[arg(long)]
    follow_forks: bool,
    /// The command to run and probe (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// How a report breaks down the hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// One row per probe.
    Probe,
    /// One row per probe, then one per thread that hit it.
    Thread,
}

pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    if let Some(what) = &args.list {
        return list(what, &args);
    }
    let specs = ProbeSpec::parse_all(&args.specs)?;
    if let Some(k) = specs.iter().find(|s| s.kind == ProbeKind::Kprobe) {
        if matches!(args.engine, Engine::Ptrace | Engine::Jump) {
            bail!(
                "`{k}`: the ptrace and jump engines probe user functions only; use uprobe:BINARY:SYMBOL"
            );
        }
        return Err(bpf::kernel::unavailable(&k.text).into());
    }
    if args.engine == Engine::Jump && args.by == By::Thread {
        bail!(
            "--engine jump counts in shared counters per probe, not per thread; use --by thread with --engine ptrace or bpf"
        );
    }
    let place = place(&args)?;
    let spawned = matches!(place, Place::Local(Target::Command { .. }));
    let lookup = Lookup {
        pid: args.pid,
        command: match &place {
            Place::Local(Target::Command { program, .. }) => Some(program.clone()),
            _ => None,
        },
    };
    let (probes, notes) = resolve_specs(&specs, &lookup, args.max_probes)?;
    notes.iter().for_each(|note| eprintln!("tracekit: {note}"));

    // First Ctrl-C/SIGTERM: the engine stops, detaches, and the report is printed.
    // No escape on a second Ctrl-C: the ptrace engine must restore every patched instruction.
    let stop = crate::stop::flag_without_escape().context("cannot install the signal handler")?;
    // With a command, the report and streamed hits go to stderr (as with ltrace, strace and
    // perf trace, and `tracekit trace summary`), so the command's own output stays untouched.
    let out = if spawned {
        args.out.target_or_stderr()
    } else {
        args.out.target()
    };
    // Without a command, streamed hits go to stdout unless the JSON report goes there.
    let events_to_stderr = spawned || (args.out.json && args.out.output.is_none());
    let nargs = args.args.map(usize::from);
    let mut output = sink::Output {
        printer: match args.print {
            true => render::HitPrinter::new(&probes, nargs),
            false => render::HitPrinter::without_names(&probes, nargs),
        },
        events_to_stderr,
        every: args.interval.map(crate::args::interval).transpose()?,
        flags: &args.out,
        target: &out,
        intervals: Intervals::start(),
        failed: None,
    };
    out.prepare()?;
    let outcome = run_engine(&place, &probes, &args, &stop, &mut output)?;

    for note in outcome.notes() {
        eprintln!("tracekit: {note}");
    }
    if let Some(e) = output.failed {
        return Err(e.into());
    }
    if output.every.is_some() {
        // The last, partial interval: what the run saw after the last report.
        output.write_interval(&outcome.report)?;
        if let Some(status) = outcome.exit {
            eprintln!("tracekit: the command exited: {status}");
        }
    } else {
        args.out.emit(
            &out,
            || render::json_report(&outcome),
            |style| render::text_report(&outcome, style),
        )?;
    }
    Ok(match outcome.exit {
        Some(status) => ExitCode::from(status.exit_code()),
        None => ExitCode::SUCCESS,
    })
}

/// `--list BINARY[:PATTERN]`: the functions that could be probed (and, for a whole binary,
/// its USDT probes); `--list usdt:BINARY[:PATTERN]`: only the USDT probes.
fn list(what: &str, args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let lookup = Lookup {
        pid: args.pid,
        command: None,
    };
    let report = tracekit_probe::usdt::list_report(what, &lookup)?;
    report
        .warnings
        .iter()
        .for_each(|w| eprintln!("tracekit: {w}"));
    args.out.emit(
        &args.out.target(),
        || render::list_json(&report),
        |style| render::list_text(&report, style),
    )?;
    Ok(ExitCode::SUCCESS)
}
