//! The GDB remote transport: the engine on a program under QEMU's user-mode gdb stub.
//!
//! [`remote`] speaks the GDB Remote Serial Protocol (registers, memory, breakpoints, stops);
//! [`qemu`] runs the breakpoint engine through it on a LoongArch64 program.

pub mod qemu;
pub mod remote;

use std::io;

/// Why the gdb remote transport failed. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// Talking to a gdb remote stub failed.
    #[error("{what}: {error}{hint}", hint = gdb_hint(error))]
    Remote {
        /// What was being done.
        what: String,
        /// The error (connection, protocol, or the stub's `Exx` reply).
        error: io::Error,
    },
    /// The program under the stub is already gone.
    #[error(
        "the program under the gdb stub is not stopped and ready ({0}); start it again with qemu-loongarch64-static -g PORT PROGRAM"
    )]
    TargetGone(String),
}

fn gdb_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => {
            " (is `qemu-loongarch64-static -g PORT PROGRAM` running and waiting on that port?)"
        }
        _ => "",
    }
}
