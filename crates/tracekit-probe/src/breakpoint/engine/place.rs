//! Placing a probe point, the steps every transport shares: the instruction found at the
//! point is classified (simulate, out of line, or refused with the user's error), and an
//! out-of-line one gets its slot's bytes. Where the bytes come from and how the slot area is
//! mapped is the transport's business.

use crate::breakpoint::BreakpointError;
use crate::breakpoint::arch::{Arch, Handling, SlotReturn};

/// How the instruction at probe `spec` is handled. `no_simulate` sends every instruction that
/// may run out of line there (for comparison); a refusal is the user's error.
pub fn handling<A: Arch>(
    spec: &str,
    insn: &A::Insn,
    no_simulate: bool,
) -> Result<Handling, BreakpointError> {
    match A::classify(insn) {
        Handling::Refuse(reason) => Err(BreakpointError::Unsupported {
            spec: spec.to_owned(),
            insn: A::text(insn),
            reason,
        }),
        Handling::Simulate if no_simulate && !A::must_simulate(insn) => Ok(Handling::OutOfLine),
        h => Ok(h),
    }
}

/// An out-of-line slot's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotImage {
    /// The copy re-encoded for the slot's address, then the way back.
    pub bytes: Vec<u8>,
    /// Where the way back starts: the copy's length at this address (a thread stopped past
    /// it has finished the copy).
    pub copy_len: u64,
}

/// The slot for `insn` at address `slot`, returning by `ret`.
pub fn slot_image<A: Arch>(
    spec: &str,
    insn: &A::Insn,
    slot: u64,
    ret: SlotReturn,
) -> Result<SlotImage, BreakpointError> {
    let unsupported = |reason| BreakpointError::Unsupported {
        spec: spec.to_owned(),
        insn: A::text(insn),
        reason,
    };
    let bytes = A::prepare_slot(insn, slot, ret).map_err(unsupported)?;
    // The copy's length is the breakpoint form's less its breakpoint: a re-encoded copy may be
    // longer than the original, and the jump back is not always the same size.
    let with_bp = A::prepare_slot(insn, slot, SlotReturn::Breakpoint).map_err(unsupported)?;
    Ok(SlotImage {
        bytes,
        copy_len: (with_bp.len() - A::BREAKPOINT.len()) as u64,
    })
}
