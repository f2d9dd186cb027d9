//! Probe specifications as users write them (`uprobe:/bin/bash:readline+4`).
//! Parsing lives here; see [`ProbeSpec`].

use serde::Serialize;
use std::path::PathBuf;

/// What a probe fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Entry of a user function (or any instruction address in it).
    Uprobe,
    /// Return of a user function.
    Uretprobe,
    /// Entry of a kernel function.
    Kprobe,
}

/// Where a probe goes inside a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeLocation {
    /// A symbol plus a byte offset from its start.
    Symbol {
        /// The symbol name from .symtab/.dynsym.
        name: String,
        /// Offset in bytes from the symbol's address.
        offset: u64,
    },
    /// A virtual address as in the ELF file (not a runtime address).
    Address(u64),
}

/// One parsed probe specification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeSpec {
    /// The text the user wrote, used as the probe's name in reports.
    pub text: String,
    /// Entry, return or kernel probe.
    pub kind: ProbeKind,
    /// The binary for user probes (empty for kprobes).
    pub binary: PathBuf,
    /// Where in the binary (for kprobes: the function name).
    pub location: ProbeLocation,
}
