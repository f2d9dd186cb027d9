//! Shared pieces of tracekit, used by every capability crate and the CLI.
//!
//! Data in tracekit flows one way: kernel maps (or ptrace/KVM measurements) become typed
//! statistics ([`stats`]), which become a report ([`report`]) rendered as an aligned table or JSON.
//! Nothing here talks to the kernel; it is the vocabulary the other crates share.
#![deny(missing_docs)]

pub mod errno;
pub mod errors;
pub mod process;
pub mod report;
pub mod stats;
pub mod syscall_set;
pub mod syscalls;
pub mod units;
