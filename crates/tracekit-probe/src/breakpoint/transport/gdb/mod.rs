//! The GDB remote transport: the engine on a program under QEMU's user-mode gdb stub.
//!
//! [`remote`] speaks the GDB Remote Serial Protocol (registers, memory, breakpoints, stops);
//! [`qemu`] runs the breakpoint engine through it on a LoongArch64 program.

pub mod qemu;
pub mod remote;
