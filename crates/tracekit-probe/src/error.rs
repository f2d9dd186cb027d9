//! The crate's one error: each stage's own error (spec, symbols, each engine) folds into it,
//! as aya's per-module errors fold into `EbpfError`, so a caller that runs the whole flow
//! matches one type and still sees the cause.

use crate::bpf::BpfError;
use crate::breakpoint::BreakpointError;
use crate::spec::SpecError;
use crate::symbols::SymbolError;

/// Why probing failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec could not be parsed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A spec could not be placed in a file.
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    /// The BPF engine failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// The breakpoint engine failed (ptrace or gdb transport).
    #[error(transparent)]
    Breakpoint(#[from] BreakpointError),
}
