//! The GDB remote transport: the engine on a program under a gdb stub (QEMU user mode's).
//!
//! [`remote`] speaks the GDB Remote Serial Protocol (registers, memory, breakpoints, stops);
//! [`qemu`] runs the breakpoint engine through it. Both are generic over the architecture:
//! what they need of one beyond [`Arch`] is [`GdbRegisters`], where its registers are in the
//! stub's numbering. An architecture reaches this transport by implementing [`GdbRegisters`]
//! next to its [`Arch`] (LoongArch64: `arch/loongarch64/gdb.rs`); nothing here changes.

pub mod qemu;
pub mod remote;

use std::fmt::Debug;
use std::io;

use crate::breakpoint::arch::Arch;

/// Why the gdb remote transport failed. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// Talking to a gdb remote stub failed.
    #[error("{what}: {error}{hint}", hint = gdb_hint(error, qemu))]
    Remote {
        /// What was being done.
        what: String,
        /// The error (connection, protocol, or the stub's `Exx` reply).
        error: io::Error,
        /// The QEMU user-mode binary for the program's architecture (for the hint).
        qemu: &'static str,
    },
    /// The program under the stub is already gone.
    #[error(
        "the program under the gdb stub is not stopped and ready ({reply}); start it again with {qemu} -g PORT PROGRAM"
    )]
    TargetGone {
        /// The stub's answer to `?`.
        reply: String,
        /// The QEMU user-mode binary for the program's architecture.
        qemu: &'static str,
    },
}

fn gdb_hint(error: &io::Error, qemu: &str) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => {
            format!(" (is `{qemu} -g PORT PROGRAM` running and waiting on that port?)")
        }
        _ => String::new(),
    }
}

/// Single registers by number (`p`/`P`): how [`GdbRegisters`] reaches the registers that do
/// not travel in `g`/`G`.
pub trait RegisterIo {
    /// Register `n`'s bytes as the stub sends them (target byte order).
    fn read_register(&mut self, n: usize) -> io::Result<Vec<u8>>;
    /// Writes register `n`.
    fn write_register(&mut self, n: usize, bytes: &[u8]) -> io::Result<()>;
}

/// An architecture's register set in the GDB remote protocol: what the gdb transport needs
/// beyond [`Arch`] (which already maps pc, sp, arguments and return value onto
/// [`Arch::Regs`]).
///
/// Registers travel in two ways: the `g`/`G` packets carry the general registers (and, in
/// `g`, the pc) in the stub's order; some registers only some probed instructions read (the
/// *on-demand* ones, LoongArch's FP condition flags) travel with `p`/`P`, one packet each,
/// and only once [`remote::GdbRemote::set_on_demand`] asked for them.
pub trait GdbRegisters: Arch<Regs: PartialEq> {
    /// The QEMU user-mode binary running this architecture's programs (named in hints).
    const QEMU: &'static str;
    /// The pc's register number (written alone with `P` when a signal goes with a resume).
    const PC_REGNUM: usize;
    /// What the client learns about how the stub lays out the on-demand registers (kept for
    /// the connection's life; `()` when there is nothing to learn).
    type Layout: Copy + Debug + Default;

    /// The registers in a `g` reply (on-demand registers zero). An error says what is missing.
    fn from_g(g: &[u8]) -> Result<Self::Regs, String>;
    /// The data of a `G` packet that writes `regs`, or `None` when it would change nothing
    /// the stub holds (`known`). A pc change never needs `G`: it goes with the next resume.
    fn to_g(known: &Self::Regs, regs: &Self::Regs) -> Option<Vec<u8>>;
    /// `regs` as the stub holds them after they were written (hard-wired registers reset).
    fn as_stored(regs: &Self::Regs) -> Self::Regs;
    /// Whether a probe on `insn` needs the on-demand registers (its simulation reads them).
    fn needs_on_demand(insn: &Self::Insn) -> bool;
    /// Zeroes the on-demand registers in `regs` (when they are not carried).
    fn clear_on_demand(regs: &mut Self::Regs);
    /// Reads the on-demand registers into `regs`.
    fn read_on_demand(
        stub: &mut dyn RegisterIo,
        layout: &mut Self::Layout,
        regs: &mut Self::Regs,
    ) -> io::Result<()>;
    /// Writes those of `regs`' on-demand registers that differ from `known`'s.
    fn write_on_demand(
        stub: &mut dyn RegisterIo,
        layout: &mut Self::Layout,
        known: &Self::Regs,
        regs: &Self::Regs,
    ) -> io::Result<()>;
}
