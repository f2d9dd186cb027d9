//! Dynamic probes on user functions.
//!
//! The data flow, the same for every engine: a [`ProbeSpec`] says where to probe (`spec`),
//! [`symbols::resolve_with`] places it in a file ([`ResolvedProbe`]); an engine runs the
//! probes on a [`Target`] and streams [`HitEvent`]s while it runs, then ends with one
//! [`Outcome`] (a [`ProbeReport`] of [`ProbeResult`]s, the exit status, warnings) that
//! [`render`] turns into the text and JSON reports.
//!
//! The engines:
//! - [`bpf`]: uprobes/uretprobes through the kernel, aggregated there.
//! - [`breakpoint`]: tracekit's own implementation of the kprobe design (breakpoint,
//!   pre-handler, simulate or run out of line, post-handler), split into an arch-independent
//!   `engine`, one file per instruction set under `arch/`, and one folder per way of reaching
//!   the target under `transport/` (ptrace for a local process, a gdb stub for a program under
//!   QEMU).
#![deny(missing_docs)]

pub mod bpf;
pub mod breakpoint;
pub mod dwarf;
pub mod error;
pub mod event;
mod ifunc;
pub mod render;
pub mod report;
pub mod spec;
pub mod symbols;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod usdt;

pub use error::Error;
pub use event::{ExitStatus, HitEvent, Outcome, Sink, Target, Ticker};
pub use report::{Interval, Intervals, ProbeReport, ProbeResult, ThreadResult};
pub use spec::{ProbeKind, ProbeLocation, ProbeSpec, SpecError};
pub use symbols::{
    Expansion, Listing, Lookup, MAX_PROBES, ResolvedProbe, SymbolError, resolve, resolve_all,
    resolve_specs, resolve_with,
};
