//! tracekit's own probe engine on ptrace: the kprobe design, in user space.
//!
//! A probe point gets a breakpoint; when a thread traps on it the engine runs the
//! pre-handler (count the hit, hijack the return address for return probes), then either
//! *simulates* the displaced instruction on the thread's registers (branches, calls, returns,
//! RIP-relative forms, `push`, `lea`, `mov` between registers) or executes a copy of it *out of
//! line* from a slot mapped into the tracee, re-encoded for the slot's address and followed by a
//! jump back (boosted) or a second breakpoint (post-handler, then resume after the original).
//!
//! The pieces are split the way kprobes split them:
//! - [`arch`]: the one architecture trait (decode, classify, simulate, prepare a slot,
//!   breakpoint encoding); [`x86_64`] implements it with iced-x86.
//! - [`target`]: reaching a stopped thread's registers and memory (ptrace here; a gdb remote
//!   stub for the later LoongArch work implements the same trait).
//! - [`engine`]: the arch-independent core: probe table, per-thread state, missed counts,
//!   handlers producing hits and latencies.
//! - `session`: the ptrace event loop (spawn/attach, threads, forks, signals, detach).

pub mod arch;
pub mod engine;
mod error;
pub mod gdb;
pub mod loongarch64;
#[doc(hidden)]
pub mod loongarch64_opcodes;
pub mod qemu;
mod session;
pub mod target;
pub mod x86_64;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

pub use error::PtraceError;

use crate::event::{HitEvent, Outcome};
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
    on_hit: &mut dyn FnMut(&HitEvent),
) -> Result<Outcome, PtraceError> {
    let table = engine::ProbeTable::<x86_64::X86_64>::new(probes)?;
    session::Session::run(table, target, opts, stop, on_hit)
}
