//! LoongArch64 behind the [`Arch`](super::arch::Arch) trait: the kprobe instruction backend.
//! (Decoder, classification and simulation arrive in this module; the register set is shared
//! with the gdb remote target.)

/// A LoongArch64 thread's registers as the engine needs them: the 32 general registers, the
/// pc, and the eight FP condition flags (read by `bceqz`/`bcnez`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// `$r0`..`$r31` (`$r0` reads as zero; `$r1` is `ra`, `$r3` is `sp`, `$r4`..`$r11` are
    /// `a0`..`a7`).
    pub gpr: [u64; 32],
    /// Program counter.
    pub pc: u64,
    /// `fcc0`..`fcc7`, bit `i` = `fcc{i}`.
    pub fcc: u8,
}
