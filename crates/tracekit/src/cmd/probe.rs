//! `tracekit probe`: function probes with BPF uprobes or tracekit's own ptrace engine.
//! Maps flags to `tracekit_probe` calls and renders the report; the work is in the library.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tracekit_core::report::{Column, OutputTarget, Style, Table};
use tracekit_core::units::ns_to_ms;
use tracekit_probe::bpf::{self, BpfOptions};
use tracekit_probe::{
    ExitStatus, Lookup, ProbeKind, ProbeReport, ProbeSpec, ResolvedProbe, resolve_with,
};

/// Which probe engine runs the probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// BPF, falling back to ptrace when the kernel refuses BPF (no CAP_BPF, EPERM).
    Auto,
    /// BPF uprobes/uretprobes, aggregated in the kernel.
    Bpf,
    /// tracekit's own breakpoint engine on ptrace (x86-64; no privileges beyond ptrace).
    Ptrace,
}

macro_rules! examples {
    () => {
        "Examples:\n  \
        tracekit probe /bin/bash:readline -p 1234\n  \
        tracekit probe uprobe:libc.so.6:malloc --print -- ls\n  \
        tracekit probe ./app:handle_request --json -o probe.json -- ./app --port 8080\n  \
        tracekit probe --engine ptrace uretprobe:./app:parse -- ./app input.txt\n  \
        qemu-loongarch64-static -g 1234 ./la-app & tracekit probe --target qemu-gdb:127.0.0.1:1234 ./la-app:work"
    };
}
const EXAMPLES: &str = examples!();

/// Arguments of `tracekit probe`.
#[derive(clap::Args)]
// The subcommand's doc comment in main.rs sets about/long_about, so the teaching text goes
// after the options.
#[command(
    after_help = EXAMPLES,
    after_long_help = concat!(
        "Count calls of user functions and measure their latency, like bpftrace uprobes or ltrace, \
        with BPF uprobes (default) or tracekit's own ptrace breakpoint engine.\n\n\
        SPEC is one of:\n  \
        uprobe:BINARY:SYMBOL[+OFFSET]   function entry (or an instruction inside it)\n  \
        uprobe:BINARY:0xADDRESS         an ELF virtual address, as `nm` prints it\n  \
        uretprobe:BINARY:SYMBOL         function return, with entry-to-return latency\n  \
        BINARY:SYMBOL                   both of the above\n  \
        kprobe:FUNC                     kernel function (needs kprobes or BPF trampolines)\n\
        BINARY is a path, a program on PATH, or a library name (libc.so.6; with -p, `libc` \
        finds the process's own).\n\n\
        The report lists hits per probe and, for return probes, total/min/avg/max/stddev and a \
        log2 histogram of the latency. Ctrl-C or SIGTERM ends the run, prints the report and \
        detaches; the traced command's exit status is passed through.\n\n\
        LoongArch64 programs are probed under QEMU: start the program with \
        `qemu-loongarch64-static -g PORT PROGRAM ARGS` (it waits for a debugger), then run \
        `tracekit probe --target qemu-gdb:HOST:PORT SPEC...` with specs naming that PROGRAM. \
        tracekit's breakpoint engine connects to QEMU's gdb stub, runs the program to its exit \
        and reports (the program's output appears where QEMU runs).\n\n",
        examples!()
    )
)]
pub struct ProbeArgs {
    /// Probe specs (forms in --help); each gives one line of the report (the short form two).
    #[arg(required = true, value_name = "SPEC")]
    specs: Vec<String>,
    /// Trace this running process (all its threads) until it exits or Ctrl-C.
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pid: Option<u32>,
    /// Probe engine: bpf, ptrace, or auto (bpf, falling back to ptrace when bpf is refused).
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    engine: Engine,
    /// Print every hit as it happens (arguments at entry; return value and latency at return).
    #[arg(long)]
    print: bool,
    /// How many integer arguments --print shows (0-6).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=6))]
    args: u8,
    /// Write the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
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

/// One streamed hit, engine-independent.
struct Hit {
    probe: usize,
    tid: i64,
    kind: ProbeKind,
    args: [u64; 6],
    retval: Option<u64>,
    latency_ns: Option<u64>,
}

impl From<&tracekit_probe::ptrace::HitEvent> for Hit {
    fn from(e: &tracekit_probe::ptrace::HitEvent) -> Hit {
        Hit {
            probe: e.probe,
            tid: e.tid.into(),
            kind: e.kind,
            args: e.args,
            retval: e.retval,
            latency_ns: e.latency_ns,
        }
    }
}

struct RunResult {
    report: ProbeReport,
    exit: Option<ExitStatus>,
    notes: Vec<String>,
}

pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let specs = ProbeSpec::parse_all(&args.specs)?;
    if specs.iter().any(|s| s.kind == ProbeKind::Kprobe) {
        let k = specs
            .iter()
            .find(|s| s.kind == ProbeKind::Kprobe)
            .expect("checked");
        if args.engine == Engine::Ptrace {
            bail!("`{k}`: the ptrace engine probes user functions only; use uprobe:BINARY:SYMBOL");
        }
        return Err(bpf::kernel::unavailable(&k.text).into());
    }
    if let Some(target) = &args.target {
        return run_qemu(&specs, target, &args);
    }
    let (program, rest) = match (args.pid, args.command.split_first()) {
        (Some(_), _) => (None, Vec::new()),
        (None, Some((p, rest))) => (Some(PathBuf::from(p)), rest.to_vec()),
        (None, None) => bail!(
            "nothing to trace: give -p PID, or a command after `--` (tracekit probe SPEC -- COMMAND ARGS...)"
        ),
    };
    if let Some(pid) = args.pid
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        bail!("no process with pid {pid}; check the pid with `ps` (the process may have exited)");
    }
    let command_path = program
        .as_deref()
        .map(bpf::launch::find_program)
        .transpose()
        .context("cannot run the command")?;
    let lookup = Lookup {
        pid: args.pid,
        command: command_path.clone(),
    };
    let probes: Vec<ResolvedProbe> = specs
        .iter()
        .map(|s| resolve_with(s, &lookup))
        .collect::<Result<_, _>>()?;

    // First Ctrl-C/SIGTERM: the engine stops, detaches, and the report is printed.
    // No escape on a second Ctrl-C: the ptrace engine must restore every patched instruction.
    let stop = crate::stop::flag_without_escape().context("cannot install the signal handler")?;
    // With a command, the report and streamed hits go to stderr (as with ltrace, strace and
    // perf trace, and `tracekit trace summary`), so the command's own output stays untouched.
    let out = if program.is_some() {
        OutputTarget::new_or_stderr(args.output.as_deref())
    } else {
        OutputTarget::new(args.output.as_deref())
    };
    // Without a command, streamed hits go to stdout unless the JSON report goes there.
    let events_to_stderr = program.is_some() || (args.json && args.output.is_none());
    let nargs = usize::from(args.args);
    let mut on_hit = |h: &Hit| print_hit(h, &probes, nargs, events_to_stderr);

    let result = match args.engine {
        Engine::Bpf => run_bpf(
            &probes,
            &args,
            command_path.as_ref(),
            &rest,
            &stop,
            &mut on_hit,
        )?,
        Engine::Ptrace => run_ptrace(
            &probes,
            &args,
            command_path.as_ref(),
            &rest,
            &stop,
            &mut on_hit,
        )?,
        Engine::Auto => match run_bpf(
            &probes,
            &args,
            command_path.as_ref(),
            &rest,
            &stop,
            &mut on_hit,
        ) {
            Err(e)
                if e.downcast_ref::<bpf::BpfError>()
                    .is_some_and(bpf::BpfError::is_refused) =>
            {
                eprintln!(
                    "tracekit: BPF engine refused ({e:#}); falling back to the ptrace engine"
                );
                run_ptrace(
                    &probes,
                    &args,
                    command_path.as_ref(),
                    &rest,
                    &stop,
                    &mut on_hit,
                )?
            }
            r => r?,
        },
    };
    finish(&result, &args, &out)
}

/// Prints the notes and the report; the exit code is the target's.
fn finish(result: &RunResult, args: &ProbeArgs, out: &OutputTarget) -> anyhow::Result<ExitCode> {
    for note in &result.notes {
        eprintln!("tracekit: {note}");
    }
    if args.json {
        out.write_json(&json_report(result))?;
    } else {
        out.write(&text_report(result, out.style()))?;
    }
    Ok(match result.exit {
        Some(status) => ExitCode::from(status.exit_code()),
        None => ExitCode::SUCCESS,
    })
}

fn run_bpf(
    probes: &[ResolvedProbe],
    args: &ProbeArgs,
    program: Option<&PathBuf>,
    rest: &[OsString],
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&Hit),
) -> anyhow::Result<RunResult> {
    let target = match (args.pid, program) {
        (Some(pid), _) => bpf::Target::Pid(pid),
        (None, Some(p)) => bpf::Target::Command {
            program: p.clone(),
            args: rest.to_vec(),
        },
        (None, None) => unreachable!("checked by run"),
    };
    let mut forward = |e: &bpf::HitEvent| {
        on_hit(&Hit {
            probe: e.probe,
            tid: e.tid.into(),
            kind: e.kind,
            args: e.args,
            retval: e.retval,
            latency_ns: e.latency_ns,
        })
    };
    let out = bpf::run(
        probes,
        &target,
        &BpfOptions {
            print: args.print,
            on_attached: args.pid.map(|_| attached as fn(usize)),
        },
        stop,
        &mut forward,
    )?;
    let mut notes = out.warnings;
    if out.lost_events > 0 {
        notes.push(format!(
            "{} streamed hits lost (ring buffer full); the counts in the report are complete",
            out.lost_events
        ));
    }
    Ok(RunResult {
        report: out.report,
        exit: out.exit,
        notes,
    })
}

fn run_ptrace(
    probes: &[ResolvedProbe],
    args: &ProbeArgs,
    program: Option<&PathBuf>,
    rest: &[OsString],
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&Hit),
) -> anyhow::Result<RunResult> {
    use tracekit_probe::ptrace;
    let target = match (args.pid, program) {
        (Some(pid), _) => ptrace::Target::Attach(i32::try_from(pid).context("pid out of range")?),
        (None, Some(p)) => ptrace::Target::Spawn {
            program: p.clone(),
            args: rest.to_vec(),
        },
        (None, None) => unreachable!("checked by run"),
    };
    let opts = ptrace::PtraceOptions {
        print: args.print,
        pin_cpu: args.pin_cpu,
        follow_forks: args.follow_forks,
        ..Default::default()
    };
    let mut forward = |e: &ptrace::HitEvent| on_hit(&Hit::from(e));
    let out = ptrace::run(probes, target, &opts, stop, &mut forward)?;
    Ok(RunResult {
        report: out.report,
        exit: out.exit,
        notes: out.warnings,
    })
}

/// `--target qemu-gdb:HOST:PORT`: the breakpoint engine on a LoongArch64 program under QEMU.
fn run_qemu(specs: &[ProbeSpec], target: &str, args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    use tracekit_probe::ptrace::{self, qemu};
    let Some(address) = target.strip_prefix("qemu-gdb:") else {
        bail!("--target `{target}`: the form is qemu-gdb:HOST:PORT (e.g. qemu-gdb:127.0.0.1:1234)");
    };
    if args.engine == Engine::Bpf {
        bail!(
            "--target qemu-gdb runs tracekit's breakpoint engine; --engine bpf cannot reach a program under QEMU"
        );
    }
    let lookup = Lookup {
        pid: None,
        command: None,
    };
    let probes: Vec<ResolvedProbe> = specs
        .iter()
        .map(|s| resolve_with(s, &lookup))
        .collect::<Result<_, _>>()?;
    let stop = crate::stop::flag_without_escape().context("cannot install the signal handler")?;
    let out = OutputTarget::new(args.output.as_deref());
    let nargs = usize::from(args.args);
    let events_to_stderr = args.json && args.output.is_none();
    let mut on_hit =
        |e: &ptrace::HitEvent| print_hit(&Hit::from(e), &probes, nargs, events_to_stderr);
    let opts = qemu::QemuOptions {
        print: args.print,
        ..Default::default()
    };
    let run = qemu::run(&probes, address, &opts, &stop, &mut on_hit)?;
    let result = RunResult {
        report: run.report,
        exit: run.exit,
        notes: run.warnings,
    };
    finish(&result, args, &out)
}

/// With -p the user starts the workload (or a test releases it) once this is printed.
fn attached(n: usize) {
    eprintln!(
        "tracekit: {n} probe{} attached; tracing until the process exits or Ctrl-C",
        if n == 1 { "" } else { "s" }
    );
}

fn print_hit(h: &Hit, probes: &[ResolvedProbe], nargs: usize, to_stderr: bool) {
    let spec = probes.get(h.probe).map_or("?", |p| p.spec.text.as_str());
    let mut line = format!("{:>7} {spec}", h.tid);
    if h.kind == ProbeKind::Uretprobe {
        if let Some(r) = h.retval {
            let _ = write!(line, " = {}", fmt_int(r));
        }
        if let Some(ns) = h.latency_ns {
            let _ = write!(line, "  ({} us)", fmt_us(ns as f64));
        }
    } else if nargs > 0 {
        let a: Vec<String> = h.args[..nargs].iter().map(|&v| fmt_int(v)).collect();
        let _ = write!(line, "({})", a.join(", "));
    }
    line.push('\n');
    let _ = if to_stderr {
        std::io::stderr().write_all(line.as_bytes())
    } else {
        std::io::stdout().write_all(line.as_bytes())
    };
}

/// Small values (positive or negative) in decimal, anything else (pointers) in hex.
fn fmt_int(v: u64) -> String {
    let s = v as i64;
    if (-1_000_000_000..=1_000_000_000_000).contains(&s) {
        s.to_string()
    } else {
        format!("{v:#x}")
    }
}

fn fmt_us(ns: f64) -> String {
    format!("{:.3}", ns / 1e3)
}

fn text_report(r: &RunResult, style: Style) -> String {
    let mut table = Table::new(vec![
        Column::left("probe"),
        Column::right("hits"),
        Column::right("missed"),
        Column::right("total(ms)"),
        Column::right("min(us)"),
        Column::right("avg(us)"),
        Column::right("max(us)"),
        Column::right("stddev(%)"),
    ]);
    for p in &r.report.probes {
        let mut row = vec![p.spec.clone(), p.hits.to_string(), p.missed.to_string()];
        if let Some(l) = p.latency.filter(|l| l.count > 0) {
            row.extend([
                ns_to_ms(l.total as f64),
                fmt_us(l.min as f64),
                fmt_us(l.mean()),
                fmt_us(l.max as f64),
                format!("{:.2}", l.rel_stddev_pct()),
            ]);
        }
        table.row(row);
    }
    let mut text = format!("\n Probes ({} engine)", r.report.engine);
    match r.exit {
        Some(ExitStatus::Code(c)) => {
            let _ = write!(text, ", command exited with status {c}");
        }
        Some(ExitStatus::Signal(s)) => {
            let _ = write!(text, ", command killed by signal {s}");
        }
        None => {}
    }
    text.push_str(":\n\n");
    text.push_str(&table.render(style));
    for p in &r.report.probes {
        if let Some(h) = p.histogram.as_ref().filter(|h| h.total() > 0) {
            let _ = write!(text, "\n@latency_ns[{}]:\n{}", p.spec, h.render(""));
        }
    }
    text
}

fn json_report(r: &RunResult) -> Value {
    let probes: Vec<Value> = r
        .report
        .probes
        .iter()
        .map(|p| {
            // No returns seen: no latency, rather than zeros that look like data.
            let latency = p.latency.filter(|l| l.count > 0).map(|l| {
                json!({
                    "count": l.count, "total_ns": l.total, "min_ns": l.min, "max_ns": l.max,
                    "avg_ns": l.mean(), "stddev_ns": l.stddev(), "sum_sq_ns2": l.sum_sq.to_string(),
                })
            });
            json!({
                "spec": p.spec, "kind": p.kind, "hits": p.hits, "missed": p.missed, "lost": p.lost,
                "latency": latency,
                "histogram_log2": p.histogram.as_ref().filter(|h| h.total() > 0).map(|h| &h.buckets),
            })
        })
        .collect();
    let exit = match r.exit {
        Some(ExitStatus::Code(c)) => json!({"code": c}),
        Some(ExitStatus::Signal(s)) => json!({"signal": s}),
        None => Value::Null,
    };
    json!({ "engine": r.report.engine, "probes": probes, "exit": exit, "notes": r.notes })
}
