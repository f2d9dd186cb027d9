//! tracekit's own breakpoint engine: the kprobe design, in user space.
//!
//! A probe point gets a breakpoint; when a thread traps on it the engine runs the
//! pre-handler (count the hit, hijack the return address for return probes), then either
//! *simulates* the displaced instruction on the thread's registers (branches, calls, returns,
//! PC-relative forms, ...) or executes a copy of it *out of line* from a slot mapped into the
//! tracee, re-encoded for the slot's address and followed by a jump back (boosted) or a second
//! breakpoint (post-handler, then resume after the original).
//!
//! Three axes, one folder each:
//! - [`engine`]: the arch- and transport-independent core: probe table, per-thread state,
//!   missed counts, handlers producing hits and latencies.
//! - [`arch`]: the one architecture trait (decode, classify, simulate, prepare a slot,
//!   breakpoint and system call encodings and numbers, slot reach, page size) and its
//!   implementations, [`arch::x86_64`] and [`arch::loongarch64`]. A third architecture is one
//!   module under `arch/` implementing [`arch::Arch`], plus its register mapping for each
//!   transport that reaches it (see [`arch`]).
//! - [`transport`]: how a stopped thread's registers and memory are reached and the target is
//!   run, generic over the architecture: [`transport::ptrace`] (a local process of the host's
//!   architecture) and [`transport::gdb`] (a program under QEMU's gdb stub; LoongArch64 is
//!   the architecture with a gdb mapping). A third transport is one folder under
//!   `transport/` (see [`transport`]).
//!
//! Every transport's `run` ends with the crate's common [`crate::Outcome`] and streams
//! [`crate::HitEvent`]s.

pub mod arch;
pub mod engine;
mod error;
pub mod jump;
pub mod transport;

pub use error::BreakpointError;
