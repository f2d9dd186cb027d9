//! The rescue area of one process: the SIGTRAP handler's code (`handler.S`), its header and
//! its two tables, and the tracer's bookkeeping of what it wrote there.
//!
//! Layout (offsets from the area's start; the handler finds them RIP-relative):
//!
//! | offset    | what                                                                  |
//! |-----------|-----------------------------------------------------------------------|
//! | `0x000`   | the handler (`handler.S`), its `sa_restorer` at [`RESTORER`]          |
//! | `0x400`   | `"/proc/self/mem"`                                                    |
//! | `0x440`   | number of point entries                                               |
//! | `0x448`   | the return trampoline's address (0: none)                             |
//! | `0x450`   | number of return entries the handler scans                            |
//! | `0x460`   | the program's own SIGTRAP action (kernel `struct sigaction`)          |
//! | `0x480`   | the handler's action, as installed                                    |
//! | `0x1000`  | points: `{ int3 address, pc to resume at, 0x100 \| original byte }`   |
//! | `0x11000` | returns: per thread a region of 64 `{ stack slot, real return }`      |
//!
//! The tracer writes everything through `/proc/PID/mem` (the area is mapped read and
//! execute only); each entry is one write, made before the breakpoint or hijacked return
//! address it describes exists, and counts are written after their entries, so that the
//! handler, whenever it runs, finds everything it can meet.

use std::collections::{HashMap, HashSet};
use std::io;

use crate::breakpoint::engine::MAX_RETURN_DEPTH;
use crate::breakpoint::transport::Memory;

/// `handler.S`, assembled (`as --64`, `objcopy -O binary -j .text`).
pub(super) const CODE: &[u8] = &[
    0x4c, 0x8d, 0x3d, 0xf9, 0xff, 0xff, 0xff, 0x4c, 0x8b, 0x82, 0xa8, 0x00, 0x00, 0x00, 0x4c, 0x8b,
    0x8a, 0xa0, 0x00, 0x00, 0x00, 0x81, 0x7e, 0x08, 0x80, 0x00, 0x00, 0x00, 0x0f, 0x85, 0xd2, 0x00,
    0x00, 0x00, 0x81, 0x7e, 0x04, 0x74, 0x72, 0x6b, 0x74, 0x75, 0x14, 0x4c, 0x3b, 0x46, 0x10, 0x0f,
    0x85, 0xbd, 0x00, 0x00, 0x00, 0x4c, 0x3b, 0x4e, 0x18, 0x0f, 0x85, 0xb3, 0x00, 0x00, 0x00, 0x4d,
    0x8d, 0x50, 0xff, 0x49, 0x8b, 0x8f, 0x40, 0x04, 0x00, 0x00, 0x49, 0x8d, 0x9f, 0x00, 0x10, 0x00,
    0x00, 0x48, 0x85, 0xc9, 0x0f, 0x84, 0xd9, 0x00, 0x00, 0x00, 0x4c, 0x39, 0x13, 0x74, 0x09, 0x48,
    0x83, 0xc3, 0x18, 0x48, 0xff, 0xc9, 0xeb, 0xe9, 0x48, 0x8b, 0x43, 0x08, 0x48, 0x89, 0x82, 0xa8,
    0x00, 0x00, 0x00, 0x4c, 0x8b, 0x73, 0x10, 0x49, 0x0f, 0xba, 0xe6, 0x08, 0x73, 0x74, 0x4d, 0x89,
    0xd5, 0x41, 0x56, 0x48, 0xc7, 0xc7, 0x9c, 0xff, 0xff, 0xff, 0x49, 0x8d, 0xb7, 0x00, 0x04, 0x00,
    0x00, 0xba, 0x02, 0x00, 0x08, 0x00, 0xb8, 0x01, 0x01, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0,
    0x78, 0x2b, 0x48, 0x89, 0xc3, 0x48, 0x89, 0xc7, 0x48, 0x89, 0xe6, 0xba, 0x01, 0x00, 0x00, 0x00,
    0x4d, 0x89, 0xea, 0xb8, 0x12, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x49, 0x89, 0xc4, 0x48, 0x89, 0xdf,
    0xb8, 0x03, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x49, 0x83, 0xfc, 0x01, 0x74, 0x24, 0x4c, 0x89, 0xef,
    0x48, 0x81, 0xe7, 0x00, 0xf0, 0xff, 0xff, 0xbe, 0x00, 0x10, 0x00, 0x00, 0xba, 0x07, 0x00, 0x00,
    0x00, 0xb8, 0x0a, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x75, 0x06, 0x45, 0x88, 0x75,
    0x00, 0x58, 0xc3, 0x58, 0xbf, 0x05, 0x00, 0x00, 0x00, 0x49, 0x8d, 0xb7, 0x60, 0x04, 0x00, 0x00,
    0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8,
    0x27, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x89, 0xc3, 0xb8, 0xba, 0x00, 0x00, 0x00, 0x0f, 0x05,
    0x48, 0x89, 0xdf, 0x48, 0x89, 0xc6, 0xba, 0x05, 0x00, 0x00, 0x00, 0xb8, 0xea, 0x00, 0x00, 0x00,
    0x0f, 0x05, 0xc3, 0x49, 0x8b, 0x87, 0x48, 0x04, 0x00, 0x00, 0x48, 0x85, 0xc0, 0x74, 0xb5, 0x49,
    0x39, 0xc2, 0x74, 0x08, 0x48, 0xff, 0xc0, 0x49, 0x39, 0xc2, 0x75, 0xa8, 0x4d, 0x8d, 0x59, 0xf8,
    0x49, 0x8b, 0x8f, 0x50, 0x04, 0x00, 0x00, 0x49, 0x8d, 0x9f, 0x00, 0x10, 0x01, 0x00, 0x48, 0x85,
    0xc9, 0x74, 0x91, 0x4c, 0x39, 0x1b, 0x74, 0x09, 0x48, 0x83, 0xc3, 0x10, 0x48, 0xff, 0xc9, 0xeb,
    0xed, 0x48, 0x8b, 0x43, 0x08, 0x48, 0x89, 0x82, 0xa8, 0x00, 0x00, 0x00, 0xc3, 0x0f, 0x1f, 0x00,
    0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05,
];

/// The `sa_restorer` (`rt_sigreturn`) in [`CODE`].
pub(super) const RESTORER: u64 = 0x180;
const PATH: u64 = 0x400;
const NPOINTS: u64 = 0x440;
const TRAMP: u64 = 0x448;
const NRET: u64 = 0x450;
/// Where the program's own SIGTRAP action is kept (put back at detach, and by the handler
/// for a SIGTRAP that is not ours).
pub(super) const ORIG_ACT: u64 = 0x460;
/// The handler's action, as `rt_sigaction` reads it.
pub(super) const NEW_ACT: u64 = 0x480;
const POINTS: u64 = 0x1000;
const POINT_SIZE: u64 = 24;
const RETURNS: u64 = 0x11000;
const RETURN_SIZE: u64 = 16;
const POINT_CAP: u64 = (RETURNS - POINTS) / POINT_SIZE;
/// Threads that can have hijacked return addresses at the same time.
const REGIONS: usize = 1024;
const REGION_BYTES: u64 = MAX_RETURN_DEPTH as u64 * RETURN_SIZE;
/// Bytes mapped (pages never written stay unallocated).
pub(super) const LEN: u64 = RETURNS + REGIONS as u64 * REGION_BYTES;
/// Put in `si_errno` by the tracer when it takes one of its traps (see `handler.S`).
pub(super) const MAGIC: i32 = 0x746b_7274;

/// The handler's `struct sigaction` (kernel layout, x86-64): handler, flags, restorer, mask.
pub(super) fn new_action(base: u64) -> [u8; 32] {
    const SA_SIGINFO: u64 = 4;
    const SA_RESTORER: u64 = 0x0400_0000;
    let words = [base, SA_SIGINFO | SA_RESTORER, base + RESTORER, 0];
    let mut out = [0u8; 32];
    for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The area's fixed part: code, path, the handler's action.
pub(super) fn write_fixed(mem: &mut dyn Memory, base: u64) -> io::Result<()> {
    mem.write(base, CODE)?;
    mem.write(base + PATH, b"/proc/self/mem\0")?;
    mem.write(base + NEW_ACT, &new_action(base))
}

/// What the tracer wrote in one process's area.
#[derive(Debug, Clone)]
pub(in super::super) struct Area {
    /// Where it is mapped.
    pub(super) base: u64,
    /// Per probe point: where a copy of its instruction runs (then jumps back).
    pub(in super::super) copies: HashMap<u64, u64>,
    /// Per guard on the instruction after a one-byte point: that instruction's copy.
    pub(in super::super) guards: HashMap<u64, u64>,
    /// Every copy: (where, the original instruction's address, its length).
    pub(in super::super) ranges: Vec<(u64, u64, u64)>,
    keys: HashSet<u64>,
    regions: HashMap<i32, usize>,
    free: Vec<usize>,
    /// Regions handed out so far (the handler scans this many).
    high: usize,
}

impl Area {
    pub(super) fn new(base: u64) -> Self {
        Area {
            base,
            copies: HashMap::new(),
            guards: HashMap::new(),
            ranges: Vec::new(),
            keys: HashSet::new(),
            regions: HashMap::new(),
            free: Vec::new(),
            high: 0,
        }
    }

    /// Records a breakpoint at `addr`: a thread trapping there resumes at `resume`, after
    /// the original byte `orig` (when given) is put back. False when the table is full.
    pub(super) fn add_point(
        &mut self,
        mem: &mut dyn Memory,
        addr: u64,
        resume: u64,
        orig: Option<u8>,
    ) -> io::Result<bool> {
        if self.keys.contains(&addr) {
            return Ok(true);
        }
        let n = self.keys.len() as u64;
        if n >= POINT_CAP {
            return Ok(false);
        }
        let flag = orig.map_or(0, |b| 0x100 | u64::from(b));
        let mut entry = [0u8; 24];
        for (chunk, w) in entry.chunks_exact_mut(8).zip([addr, resume, flag]) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        mem.write(self.base + POINTS + n * POINT_SIZE, &entry)?;
        mem.write_u64(self.base + NPOINTS, n + 1)?;
        self.keys.insert(addr);
        Ok(true)
    }

    /// Records the return trampoline's address.
    pub(super) fn set_trampoline(&mut self, mem: &mut dyn Memory, addr: u64) -> io::Result<()> {
        mem.write_u64(self.base + TRAMP, addr)
    }

    /// Records that thread `tid`'s `depth`-th hijacked return address (from the outermost)
    /// is at stack slot `slot` and really `real`. False when every region is taken.
    pub(super) fn record_return(
        &mut self,
        mem: &mut dyn Memory,
        tid: i32,
        depth: usize,
        slot: u64,
        real: u64,
    ) -> io::Result<bool> {
        let Some(region) = self.region(mem, tid)? else {
            return Ok(false);
        };
        let mut entry = [0u8; 16];
        entry[..8].copy_from_slice(&slot.to_le_bytes());
        entry[8..].copy_from_slice(&real.to_le_bytes());
        mem.write(self.entry_addr(region, depth), &entry)?;
        Ok(true)
    }

    /// Forgets thread `tid`'s entries `from..to` (returned, or abandoned frames).
    pub(super) fn clear_returns(
        &mut self,
        mem: &mut dyn Memory,
        tid: i32,
        from: usize,
        to: usize,
    ) -> io::Result<()> {
        let Some(&region) = self.regions.get(&tid) else {
            return Ok(());
        };
        let to = to.min(MAX_RETURN_DEPTH);
        if from >= to {
            return Ok(());
        }
        let zeros = vec![0u8; (to - from) * RETURN_SIZE as usize];
        mem.write(self.entry_addr(region, from), &zeros)
    }

    /// Thread `tid` is gone: its region may go to another thread (cleared first).
    pub(super) fn release(&mut self, tid: i32) {
        if let Some(region) = self.regions.remove(&tid) {
            self.free.push(region);
        }
    }

    /// The copy a followed fork child has: the same area at the same address, whose only
    /// thread `child` inherits `parent`'s region (and hijacked returns); every other region
    /// of the copy is cleared, so that no entry of the parent's threads stays in it.
    pub(super) fn fork_copy(
        &self,
        mem: &mut dyn Memory,
        parent: i32,
        child: i32,
    ) -> io::Result<Area> {
        let mut copy = Area::new(self.base);
        copy.keys = self.keys.clone();
        copy.copies = self.copies.clone();
        copy.guards = self.guards.clone();
        copy.ranges = self.ranges.clone();
        copy.high = self.high;
        let kept = self.regions.get(&parent).copied();
        for region in (0..self.high).filter(|&r| Some(r) != kept) {
            copy.clear_region(mem, region)?;
            copy.free.push(region);
        }
        if let Some(region) = kept {
            copy.regions.insert(child, region);
        }
        Ok(copy)
    }

    /// Thread `tid`'s region, handing one out (cleared) on its first use.
    fn region(&mut self, mem: &mut dyn Memory, tid: i32) -> io::Result<Option<usize>> {
        if let Some(&r) = self.regions.get(&tid) {
            return Ok(Some(r));
        }
        let region = match self.free.pop() {
            Some(r) => r,
            None if self.high < REGIONS => {
                self.high += 1;
                mem.write_u64(self.base + NRET, (self.high * MAX_RETURN_DEPTH) as u64)?;
                self.high - 1
            }
            None => return Ok(None),
        };
        self.clear_region(mem, region)?;
        self.regions.insert(tid, region);
        Ok(Some(region))
    }

    fn clear_region(&self, mem: &mut dyn Memory, region: usize) -> io::Result<()> {
        mem.write(self.entry_addr(region, 0), &[0u8; REGION_BYTES as usize])
    }

    fn entry_addr(&self, region: usize, depth: usize) -> u64 {
        self.base + RETURNS + region as u64 * REGION_BYTES + depth as u64 * RETURN_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(HashMap<u64, u8>);
    impl Memory for Fake {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = *self.0.get(&(addr + i as u64)).unwrap_or(&0);
            }
            Ok(())
        }
        fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
            for (i, b) in data.iter().enumerate() {
                self.0.insert(addr + i as u64, *b);
            }
            Ok(())
        }
    }

    #[test]
    fn code_fits_below_its_data_and_ends_with_rt_sigreturn() {
        assert!(CODE.len() as u64 <= PATH);
        assert_eq!(
            &CODE[RESTORER as usize..],
            &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]
        );
    }

    #[test]
    fn points_are_counted_after_their_entry_and_once() {
        let mut m = Fake(HashMap::new());
        let mut a = Area::new(0x10000);
        assert!(a.add_point(&mut m, 0x401000, 0x401000, Some(0x55)).unwrap());
        assert!(a.add_point(&mut m, 0x401000, 0x401000, Some(0x55)).unwrap());
        assert_eq!(m.read_u64(0x10000 + NPOINTS).unwrap(), 1);
        assert_eq!(m.read_u64(0x10000 + POINTS + 16).unwrap(), 0x155);
    }

    #[test]
    fn regions_are_cleared_when_reused_and_in_a_fork_copy() {
        let mut m = Fake(HashMap::new());
        let mut a = Area::new(0x10000);
        a.record_return(&mut m, 7, 0, 0x7ff0, 0x401234).unwrap();
        a.record_return(&mut m, 8, 0, 0x6ff0, 0x401111).unwrap();
        assert_eq!(m.read_u64(0x10000 + NRET).unwrap(), 128);
        let child = a.fork_copy(&mut m, 8, 9).unwrap();
        assert_eq!(
            m.read_u64(0x10000 + RETURNS).unwrap(),
            0,
            "thread 7's entry cleared"
        );
        assert_eq!(child.regions[&9], 1);
        a.release(7);
        a.record_return(&mut m, 10, 1, 0x5ff0, 0x402222).unwrap();
        assert_eq!(a.regions[&10], 0);
        a.clear_returns(&mut m, 10, 1, 2).unwrap();
        assert_eq!(m.read_u64(0x10000 + RETURNS + 16).unwrap(), 0);
    }
}
