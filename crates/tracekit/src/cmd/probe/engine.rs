//! The engine policy of `tracekit probe`: where the probes run (`--target`, `-p`, a
//! command) and which engine runs them (`--engine`, and auto's fallback from BPF to ptrace).

use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use tracekit_probe::bpf::{self, BpfOptions};
use tracekit_probe::breakpoint::arch::loongarch64::LoongArch64;
use tracekit_probe::breakpoint::transport::gdb::qemu;
use tracekit_probe::breakpoint::transport::ptrace;
use tracekit_probe::{HitEvent, Outcome, ResolvedProbe, Sink, Target};

use super::{By, ProbeArgs};

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

/// Where the probes run.
pub(super) enum Place {
    /// A local process, for either engine.
    Local(Target),
    /// QEMU's gdb stub at `HOST:PORT`.
    Qemu(String),
}

/// Checks the target flags and finds the command, before any probe is resolved.
pub(super) fn place(args: &ProbeArgs) -> anyhow::Result<Place> {
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
pub(super) fn run_engine(
    place: &Place,
    probes: &[ResolvedProbe],
    args: &ProbeArgs,
    stop: &AtomicBool,
    sink: &mut dyn Sink,
) -> anyhow::Result<Outcome> {
    let target = match place {
        Place::Qemu(address) => {
            let opts = qemu::QemuOptions {
                print: args.print,
                ..Default::default()
            };
            // The one architecture with a gdb register mapping; the engine refuses binaries of
            // another.
            return Ok(qemu::run::<LoongArch64>(
                probes,
                address,
                &opts,
                stop,
                &mut |e: &HitEvent| sink.hit(e),
            )?);
        }
        Place::Local(target) => target,
    };
    let by_thread = args.by == By::Thread;
    let bpf_opts = BpfOptions {
        print: args.print,
        on_attached: args.pid.map(|_| attached as fn(usize)),
        by_thread,
        thread_entries: args.max_threads,
    };
    let run_ptrace = |sink: &mut dyn Sink| -> anyhow::Result<Outcome> {
        let opts = ptrace::PtraceOptions {
            print: args.print,
            pin_cpu: args.pin_cpu,
            follow_forks: args.follow_forks,
            by_thread,
            jump: args.engine == Engine::Jump,
            ..Default::default()
        };
        let target = target.try_into().context("pid out of range")?;
        Ok(ptrace::run_with_sink(probes, target, &opts, stop, sink)?)
    };
    let run_bpf = |sink: &mut dyn Sink| bpf::run_with_sink(probes, target, &bpf_opts, stop, sink);
    match args.engine {
        Engine::Bpf => Ok(run_bpf(sink)?),
        Engine::Ptrace | Engine::Jump => run_ptrace(sink),
        Engine::Auto => match run_bpf(sink) {
            Err(e) if e.is_refused() => {
                let e = anyhow::Error::from(e);
                eprintln!(
                    "tracekit: BPF engine refused ({e:#}); falling back to the ptrace engine"
                );
                run_ptrace(sink)
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
