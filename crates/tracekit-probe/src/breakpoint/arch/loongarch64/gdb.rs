//! LoongArch64's registers in the GDB remote protocol, as QEMU's stub lays them out: the
//! mapping [`GdbRegisters`] asks for.
//!
//! Measured against `qemu-loongarch64-static` 7.2.22 (Debian 12; `tests/gdb_remote.rs`
//! asserts each of these facts):
//! - `g` returns 35 64-bit registers: `$r0..$r31`, `orig_a0` (32), `pc` (33), `badv` (34).
//!   `G` must not carry more than the 32 GPRs: QEMU's write of register 32 consumes no bytes,
//!   so a full `G` shifts every later value by one (the pc gets `orig_a0`'s value). The pc is
//!   written with `P21=` (or as `c ADDR` / `s ADDR`).
//! - `target.xml` names `loongarch-base64.xml` and `loongarch-fpu.xml`, but reading those
//!   answers `E00`, so register numbers were found by probing `p`: 0x23..0x42 are `f0..f31`
//!   (8 bytes), **0x43 is one 8-byte `fcc` register, byte `i` = `fcc{i}`** (only bit 0 of
//!   each byte is kept: writing 2 reads back 0), 0x44 is `fcsr` (4 bytes), 0x45 and up are
//!   `E14`. Checked end to end: `P43=0000000100000001`, then running `movcf2gr` on every flag
//!   gives the mask 0x88. (QEMU 8.2 and later split it into one-byte `fcc0..fcc7`,
//!   0x43..0x4a; the mapping detects which from the size of register 0x43.)
//!
//! The FP condition flags are the on-demand registers: only `bceqz`/`bcnez` read them.

use std::io;

use super::{Class, Insn, LoongArch64, Regs};
use crate::breakpoint::transport::gdb::{GdbRegisters, RegisterIo};

/// How a stub exposes the FP condition flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FccLayout {
    /// Not asked yet.
    #[default]
    Unknown,
    /// QEMU before 8.2: register 0x43, 8 bytes, byte `i` = `fcc{i}`.
    Packed,
    /// QEMU 8.2 and later: `fcc0..fcc7` are registers 0x43..0x4a, one byte each.
    Split,
}

/// The pc's number in QEMU's loongarch64 layout.
const PC: usize = 33;
/// The first FP condition flag register.
const FCC: usize = 0x43;

impl GdbRegisters for LoongArch64 {
    const QEMU: &'static str = "qemu-loongarch64-static";
    const PC_REGNUM: usize = PC;
    type Layout = FccLayout;

    fn from_g(g: &[u8]) -> Result<Regs, String> {
        let word = |i: usize| {
            g.get(8 * i..8 * i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| format!("`g` reply of {} bytes has no register {i}", g.len()))
        };
        let mut regs = Regs::default();
        for (i, r) in regs.gpr.iter_mut().enumerate() {
            *r = word(i)?;
        }
        regs.pc = word(PC)?;
        Ok(regs)
    }

    fn to_g(known: &Regs, regs: &Regs) -> Option<Vec<u8>> {
        // Never more than the 32 GPRs (see the module documentation); `$zero` is not written.
        if known.gpr[1..] == regs.gpr[1..] {
            return None;
        }
        let mut gpr = regs.gpr;
        gpr[0] = 0;
        Some(gpr.iter().flat_map(|r| r.to_le_bytes()).collect())
    }

    fn as_stored(regs: &Regs) -> Regs {
        let mut now = *regs;
        now.gpr[0] = 0;
        now
    }

    fn needs_on_demand(insn: &Insn) -> bool {
        matches!(insn.class(), Class::FpBranch)
    }

    fn clear_on_demand(regs: &mut Regs) {
        regs.fcc = 0;
    }

    fn read_on_demand(
        stub: &mut dyn RegisterIo,
        layout: &mut FccLayout,
        regs: &mut Regs,
    ) -> io::Result<()> {
        regs.fcc = read_fcc(stub, layout)?;
        Ok(())
    }

    fn write_on_demand(
        stub: &mut dyn RegisterIo,
        layout: &mut FccLayout,
        known: &Regs,
        regs: &Regs,
    ) -> io::Result<()> {
        if known.fcc == regs.fcc {
            return Ok(());
        }
        if *layout == FccLayout::Unknown {
            read_fcc(stub, layout)?;
        }
        let bytes: Vec<u8> = (0..8).map(|i| regs.fcc >> i & 1).collect();
        match layout {
            FccLayout::Split => {
                // One packet per flag that changed.
                for (i, &b) in bytes.iter().enumerate() {
                    if known.fcc >> i & 1 != b {
                        stub.write_register(FCC + i, &[b])?;
                    }
                }
                Ok(())
            }
            _ => stub.write_register(FCC, &bytes),
        }
    }
}

/// The eight flags as a mask (bit `i` = `fcc{i}`), learning the stub's layout from the size
/// of the first register.
fn read_fcc(stub: &mut dyn RegisterIo, layout: &mut FccLayout) -> io::Result<u8> {
    let first = stub.read_register(FCC)?;
    *layout = match first.len() {
        1 => FccLayout::Split,
        8 => FccLayout::Packed,
        n => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("FP condition register 0x{FCC:x} has {n} bytes"),
            ));
        }
    };
    let mut bytes = first;
    if *layout == FccLayout::Split {
        for i in 1..8 {
            bytes.extend(stub.read_register(FCC + i)?);
        }
    }
    Ok(bytes
        .iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | (b & 1) << i))
}
