//! `tracekit probe`: function probes with BPF uprobes or tracekit's own ptrace engine.
//! Maps flags to `tracekit_probe` calls, chooses the engine (and falls back), and says where
//! the output goes; the engines and the reports are in the library.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use tracekit_core::report::OutputTarget;
use tracekit_probe::bpf::{self, BpfOptions};
use tracekit_probe::breakpoint::transport::gdb::qemu;
use tracekit_probe::breakpoint::transport::ptrace;
use tracekit_probe::{
    HitEvent, Lookup, MAX_PROBES, Outcome, ProbeKind, ProbeSpec, ResolvedProbe, Target, render,
    resolve_specs,
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
    /// ptrace places, but each probe whose code allows it gets a jump to a trampoline that
    /// counts without a trap (x86-64); the others keep int3, with the reason shown.
    Jump,
}

macro_rules! examples {
    () => {
        "Examples:\n  \
        tracekit probe /bin/bash:readline -p 1234\n  \
        tracekit probe uprobe:libc.so.6:malloc --print -- ls\n  \
        tracekit probe 'uprobe:libc.so.6:str*' -- ls /    (one probe per matching function)\n  \
        tracekit probe --list 'libc.so.6:mem*'\n  \
        tracekit probe 'uprobe:./app:\"ns::Foo::bar\"' -- ./app\n  \
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
        uprobe:BINARY:PATTERN           every function matching *, ? or [...] (see --list)\n  \
        uprobe:BINARY:\"ns::Foo::bar\"    a C++ or Rust name (with ::) in double quotes\n  \
        kprobe:FUNC                     kernel function (needs kprobes or BPF trampolines)\n\
        BINARY is a path, a program on PATH, or a library name (libc.so.6; with -p, `libc` \
        finds the process's own). SYMBOL may be mangled or demangled (C++, Rust), carry a \
        version (memcpy@GLIBC_2.14), or be an IFUNC (strlen: the probe goes to the \
        implementation this machine's loader selects).\n\n\
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
    #[arg(required_unless_present = "list", value_name = "SPEC")]
    specs: Vec<String>,
    /// List the functions of BINARY (matching PATTERN) that could be probed, with their
    /// first instruction and which engine can take it; probes nothing.
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

/// Where the probes run.
enum Place {
    /// A local process, for either engine.
    Local(Target),
    /// QEMU's gdb stub at `HOST:PORT`.
    Qemu(String),
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
        OutputTarget::new_or_stderr(args.output.as_deref())
    } else {
        OutputTarget::new(args.output.as_deref())
    };
    // Without a command, streamed hits go to stdout unless the JSON report goes there.
    let events_to_stderr = spawned || (args.json && args.output.is_none());
    let nargs = usize::from(args.args);
    let mut on_hit = |h: &HitEvent| {
        let line = render::hit_line(h, &probes, nargs);
        let _ = if events_to_stderr {
            std::io::stderr().write_all(line.as_bytes())
        } else {
            std::io::stdout().write_all(line.as_bytes())
        };
    };
    let outcome = run_engine(&place, &probes, &args, &stop, &mut on_hit)?;

    for note in outcome.notes() {
        eprintln!("tracekit: {note}");
    }
    if args.json {
        out.write_json(&render::json_report(&outcome))?;
    } else {
        out.write(&render::text_report(&outcome, out.style()))?;
    }
    Ok(match outcome.exit {
        Some(status) => ExitCode::from(status.exit_code()),
        None => ExitCode::SUCCESS,
    })
}

/// `--list BINARY[:PATTERN]`: the functions that could be probed, as a table or JSON.
fn list(what: &str, args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let lookup = Lookup {
        pid: args.pid,
        command: None,
    };
    let (path, machine, listings) = tracekit_probe::symbols::list(what, &lookup)?;
    let out = OutputTarget::new(args.output.as_deref());
    if args.json {
        out.write_json(&render::listing_json(&path, &machine, &listings))?;
    } else {
        let heading = format!("\n {}: {} functions\n\n", path.display(), listings.len());
        out.write(&(heading + &render::listing_table(&machine, &listings, out.style())))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the target flags and finds the command, before any probe is resolved.
fn place(args: &ProbeArgs) -> anyhow::Result<Place> {
    if let Some(target) = &args.target {
        let Some(address) = target.strip_prefix("qemu-gdb:") else {
            bail!(
                "--target `{target}`: the form is qemu-gdb:HOST:PORT (e.g. qemu-gdb:127.0.0.1:1234)"
            );
        };
        if args.engine == Engine::Bpf {
            bail!(
                "--target qemu-gdb runs tracekit's breakpoint engine; --engine bpf cannot reach a program under QEMU"
            );
        }
        return Ok(Place::Qemu(address.to_owned()));
    }
    Ok(Place::Local(match (args.pid, args.command.split_first()) {
        (Some(pid), _) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
            bail!(
                "no process with pid {pid}; check the pid with `ps` (the process may have exited)"
            )
        }
        (Some(pid), _) => Target::Pid(pid),
        (None, Some((program, rest))) => Target::Command {
            program: tracekit_core::process::find_program(std::path::Path::new(program))
                .context("cannot run the command")?,
            args: rest.to_vec(),
        },
        (None, None) => bail!(
            "nothing to trace: give -p PID, or a command after `--` (tracekit probe SPEC -- COMMAND ARGS...)"
        ),
    }))
}

/// The one engine dispatch: `--target` decides the breakpoint engine under QEMU, otherwise
/// `--engine`, where auto is BPF falling back to ptrace when the kernel refuses BPF.
fn run_engine(
    place: &Place,
    probes: &[ResolvedProbe],
    args: &ProbeArgs,
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&HitEvent),
) -> anyhow::Result<Outcome> {
    let target = match place {
        Place::Qemu(address) => {
            let opts = qemu::QemuOptions {
                print: args.print,
                ..Default::default()
            };
            return Ok(qemu::run(probes, address, &opts, stop, on_hit)?);
        }
        Place::Local(target) => target,
    };
    let bpf_opts = BpfOptions {
        print: args.print,
        on_attached: args.pid.map(|_| attached as fn(usize)),
    };
    let run_ptrace = |on_hit: &mut dyn FnMut(&HitEvent)| -> anyhow::Result<Outcome> {
        let opts = ptrace::PtraceOptions {
            print: args.print,
            pin_cpu: args.pin_cpu,
            follow_forks: args.follow_forks,
            jump: args.engine == Engine::Jump,
            ..Default::default()
        };
        let target = target.try_into().context("pid out of range")?;
        Ok(ptrace::run(probes, target, &opts, stop, on_hit)?)
    };
    match args.engine {
        Engine::Bpf => Ok(bpf::run(probes, target, &bpf_opts, stop, on_hit)?),
        Engine::Ptrace | Engine::Jump => run_ptrace(on_hit),
        Engine::Auto => match bpf::run(probes, target, &bpf_opts, stop, on_hit) {
            Err(e) if e.is_refused() => {
                let e = anyhow::Error::from(e);
                eprintln!(
                    "tracekit: BPF engine refused ({e:#}); falling back to the ptrace engine"
                );
                run_ptrace(on_hit)
            }
            r => Ok(r?),
        },
    }
}

/// With -p the user starts the workload (or a test releases it) once this is printed.
fn attached(n: usize) {
    eprintln!(
        "tracekit: {n} probe{} attached; tracing until the process exits or Ctrl-C",
        if n == 1 { "" } else { "s" }
    );
}
