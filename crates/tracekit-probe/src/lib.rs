//! Dynamic probes on user functions.
//!
//! Two engines share one vocabulary: a [`ProbeSpec`] says where to probe, [`symbols::resolve`]
//! places it in a file, a [`ProbeResult`] says what was seen there; every engine streams the
//! same [`HitEvent`]s and ends with the same [`Outcome`], which [`render`] turns into the text
//! and JSON reports. The BPF engine attaches
//! uprobes/uretprobes and aggregates in the kernel; the ptrace engine is tracekit's own
//! implementation of the kprobe design (breakpoint, pre-handler, simulate or single-step out of
//! line, post-handler).
#![deny(missing_docs)]

pub mod bpf;
pub mod breakpoint;
pub mod event;
mod ifunc;
pub mod render;
pub mod report;
pub mod spec;
pub mod symbols;
#[cfg(feature = "testdata")]
pub mod test_support;
// The old name, for the tests of other crates that still use it (tracekit's exporter test).
#[cfg(feature = "testdata")]
#[doc(hidden)]
pub use test_support as testdata;

pub use event::{ExitStatus, HitEvent, Outcome, Target};
pub use report::{ProbeReport, ProbeResult};
pub use spec::{ProbeKind, ProbeLocation, ProbeSpec, SpecError};
pub use symbols::{Lookup, ResolvedProbe, SymbolError, resolve, resolve_with};
