//! The ptrace transport: the breakpoint engine on a local process.
//!
//! [`PtraceTarget`] reaches a stopped thread's registers and the process's memory; `session`
//! is the event loop (spawn/attach, threads, forks, signals, the injected `mmap` for the slot
//! area, detach). The session is generic over the [`Arch`](crate::breakpoint::arch::Arch)
//! whose registers [`PtraceTarget`] maps (the bound `PtraceTarget: Registers<A::Regs>`);
//! every architecture fact it uses (breakpoint and system call instructions, `mmap` numbers,
//! slot reach, page size) comes from that trait. [`run`] runs it on
//! [`arch::Host`](crate::breakpoint::arch::Host), the tracer's own architecture (x86-64, whose
//! `user_regs_struct` mapping is in `target.rs`): ptrace reaches only that instruction set.
//! Another host architecture is its `Registers` mapping in `target.rs` (behind its
//! `cfg(target_arch)`) and its line in `arch::Host`; nothing else here changes.

mod session;
mod target;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

pub use target::PtraceTarget;

use crate::breakpoint::BreakpointError;
use crate::breakpoint::arch::Host;
use crate::breakpoint::engine::ProbeTable;
use crate::event::{HitEvent, Outcome, Sink};
use crate::symbols::ResolvedProbe;

/// What to trace.
#[derive(Debug)]
pub enum Target {
    /// Run a program under the engine (probes are placed once the program reaches its entry
    /// point, when its shared libraries are loaded). Standard streams are inherited.
    Spawn {
        /// The program (looked up on `PATH` if it has no slash).
        program: PathBuf,
        /// Its arguments, without `argv[0]`.
        args: Vec<OsString>,
    },
    /// Like [`Target::Spawn`], with stdin and/or stdout redirected (tests, benchmarks).
    SpawnRedirected {
        /// The program.
        program: PathBuf,
        /// Its arguments, without `argv[0]`.
        args: Vec<OsString>,
        /// Becomes the program's stdin when given.
        stdin: Option<OwnedFd>,
        /// Becomes the program's stdout when given.
        stdout: Option<OwnedFd>,
    },
    /// Attach to every thread of a running process; detach leaves it running.
    Attach(i32),
}

impl TryFrom<&crate::event::Target> for Target {
    type Error = std::num::TryFromIntError;

    /// The common target as the ptrace transport takes it (pids are `pid_t` here).
    fn try_from(t: &crate::event::Target) -> Result<Self, Self::Error> {
        Ok(match t {
            crate::event::Target::Command { program, args } => Target::Spawn {
                program: program.clone(),
                args: args.clone(),
            },
            crate::event::Target::Pid(pid) => Target::Attach(i32::try_from(*pid)?),
        })
    }
}

/// How the engine runs.
#[derive(Debug, Clone, Default)]
pub struct PtraceOptions {
    /// Keep tracing forked children (with the same probes). When false, the breakpoints are
    /// removed from a child's copy of the text and the child is let go.
    pub follow_forks: bool,
    /// Call `on_hit` for every hit (the report's counts are kept either way). When false the
    /// callback is not called, which saves building events.
    pub print: bool,
    /// Pin the tracer and every tracee thread to this CPU: a ptrace stop then costs a context
    /// switch instead of a cross-CPU wake-up (about 4x cheaper on a 2-CPU VM). The tracee's
    /// affinity is restored at detach.
    pub pin_cpu: Option<usize>,
    /// Come back from an out-of-line slot through a second breakpoint (classic kprobe
    /// single-step with a post-handler) instead of a jump (boosted). Slower; for testing and
    /// comparison.
    pub slot_breakpoint: bool,
    /// Never simulate: execute every displaced instruction out of line (for comparison).
    pub no_simulate: bool,
    /// How long the tracer polls for the next stop before it sleeps in `waitpid`. `None`:
    /// 20 µs when not pinned (saves waking an idle CPU for every hit), nothing when pinned.
    pub spin: Option<std::time::Duration>,
    /// Also count hits and latencies per thread ([`crate::ProbeResult::threads`]).
    pub by_thread: bool,
    /// The jump engine ([`crate::breakpoint::jump`]): a point whose instructions allow it
    /// gets a jump to a trampoline that counts without stopping anyone; the others keep
    /// int3, with the reason in the outcome's warnings. Jump hits are counted, not streamed:
    /// `on_hit` sees only the int3 points' hits.
    pub jump: bool,
}

/// Runs the probes on the target until it exits or `stop` becomes true, then detaches
/// cleanly (original bytes back, hijacked return addresses back, no thread left stopped).
///
/// Every probe must come from [`crate::symbols::resolve_with`]; entry probes may be at any
/// instruction boundary, return probes at a function's first instruction. `on_hit` is called
/// for every hit when [`PtraceOptions::print`] is set.
pub fn run(
    probes: &[ResolvedProbe],
    target: Target,
    opts: &PtraceOptions,
    stop: &AtomicBool,
    mut on_hit: &mut dyn FnMut(&HitEvent),
) -> Result<Outcome, BreakpointError> {
    run_with_sink(probes, target, opts, stop, &mut on_hit)
}

/// [`run`], handing `sink` every hit when [`PtraceOptions::print`] is set and the counts so
/// far every [`Sink::every`] (interval reports).
pub fn run_with_sink(
    probes: &[ResolvedProbe],
    target: Target,
    opts: &PtraceOptions,
    stop: &AtomicBool,
    sink: &mut dyn Sink,
) -> Result<Outcome, BreakpointError> {
    // ptrace reaches only the tracer's own instruction set.
    let table = ProbeTable::<Host>::new(probes)?;
    let jump = opts
        .jump
        .then(|| crate::breakpoint::jump::plan(probes, &table));
    let mut sink = FoldingSink {
        inner: sink,
        probes,
    };
    let mut outcome = session::Session::run(table, target, opts, jump, stop, &mut sink)?;
    outcome.report.fold_sites(probes);
    Ok(outcome)
}

/// Hands the interval reads on with a USDT probe's sites folded into one row, as the final
/// report is (the engine counts per site).
struct FoldingSink<'a> {
    inner: &'a mut dyn Sink,
    probes: &'a [ResolvedProbe],
}

impl Sink for FoldingSink<'_> {
    fn hit(&mut self, event: &HitEvent) {
        self.inner.hit(event);
    }

    fn every(&self) -> Option<std::time::Duration> {
        self.inner.every()
    }

    fn started(&mut self) {
        self.inner.started();
    }

    fn interval(&mut self, so_far: &crate::ProbeReport) {
        let mut folded = so_far.clone();
        folded.fold_sites(self.probes);
        self.inner.interval(&folded);
    }
}
