//! What the guest runs and sees: the memory-touching loop (assembled with iced-x86, integer
//! instructions only, because software-virtualized KVM cannot emulate SSE), the per-vCPU
//! argument block it reads, and the x86-64 4-level page tables that map it all.
//!
//! The loop runs in user mode (CPL 3) by default. It needs no privilege: it leaves to the host by
//! writing to a page with no memory slot behind it (an MMIO exit) rather than with `out` or
//! `hlt`. On PVM hosts (software-virtualized KVM) that matters: guest user mode runs natively
//! while every guest supervisor-mode instruction goes through KVM's instruction emulator.

use crate::memory::{HostMemory, PAGE_SIZE};
use iced_x86::IcedError;
use iced_x86::code_asm::*;
use serde::Serialize;

/// Byte the guest writes to its sync page when it has touched all its pages (the seed's GUEST_SYNC).
pub const SYNC_DONE: u8 = 1;
/// Byte the guest writes when its argument block is not its own (the seed's GUEST_ASSERT).
pub const SYNC_BAD_ARGS: u8 = 2;

/// The privilege level the guest loop runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Privilege {
    /// CPL 3, user-accessible page tables (the default).
    User,
    /// CPL 0, like the seed's guest code.
    Supervisor,
}

impl Privilege {
    /// The guest CPU mode, as reported.
    pub fn describe(self) -> &'static str {
        match self {
            Privilege::User => {
                "x86-64 long mode, 4-level paging, 4 KiB guest pages, user mode (CPL 3)"
            }
            Privilege::Supervisor => {
                "x86-64 long mode, 4-level paging, 4 KiB guest pages, supervisor mode (CPL 0)"
            }
        }
    }
}

/// Bytes per vCPU argument block; two cache lines (a multiple of a line, so the guest's
/// progress stores do not bounce a line between vCPUs).
pub const ARGS_SIZE: u64 = 128;

/// Offsets of the fields of a vCPU's argument block (all little-endian u64).
pub mod args {
    /// Guest virtual address of the vCPU's first test page.
    pub const GVA: u64 = 0;
    /// Number of pages to visit.
    pub const PAGES: u64 = 8;
    /// Guest page size (distance between visited addresses).
    pub const PAGE_SIZE: u64 = 16;
    /// Iteration number, stored in bits 48..63 of every value written.
    pub const ITERATION: u64 = 24;
    /// Write one page in `WR_FRACT`, read the others (the seed's `wr_fract`).
    pub const WR_FRACT: u64 = 32;
    /// The vCPU's index, checked by the guest against its RSI.
    pub const VCPU_ID: u64 = 40;
    /// Pages visited so far in this pass, written by the guest (progress).
    pub const DONE: u64 = 48;
    /// Guest virtual address of the sync page: a store there exits to the host.
    pub const SYNC: u64 = 56;
    /// Guest TSC when the pass began (RDTSC, written by the guest).
    pub const TSC_START: u64 = 64;
    /// Guest TSC when the pass's last page was touched (written by the guest).
    pub const TSC_END: u64 = 72;
    /// The random generator's state, carried from pass to pass (see [`crate::access`]).
    pub const RAND_STATE: u64 = 80;
    /// Write percentage 0..=100 (memstress's write_percent); above 100: use `WR_FRACT`.
    pub const WRITE_PERCENT: u64 = 88;
    /// Non-zero: pick each access's page at random.
    pub const RANDOM: u64 = 96;
}

/// `args::WRITE_PERCENT` value meaning "write every `WR_FRACT`-th page".
pub const BY_WR_FRACT: u64 = u64::MAX;

/// The value the guest writes into the first 8 bytes of the page at `gva` in `iteration`:
/// unique per page and per iteration, so a lost or stale page cannot go unnoticed.
pub fn page_value(gva: u64, iteration: u64) -> u64 {
    (iteration << 48) | gva
}

/// Assembles the guest loop at guest address `ip`.
///
/// On entry RDI holds the address of the vCPU's argument block and RSI its index. Each pass
/// reads the block and makes `pages` accesses as [`crate::access::replay`] describes (page in
/// order or at random; written by `wr_fract` or by write percentage), writing
/// `page_value(gva, iteration)` to the first 8 bytes of a written page and reading the others;
/// then it saves the generator state and writes [`SYNC_DONE`] to its sync page, which exits to
/// the host; the host may change the block before resuming it for the next pass.
pub fn guest_code(ip: u64) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut l = Labels {
        pass: a.create_label(),
        next_page: a.create_label(),
        have_page: a.create_label(),
        by_fract: a.create_label(),
        write: a.create_label(),
        read: a.create_label(),
        advance: a.create_label(),
        no_wrap: a.create_label(),
        done: a.create_label(),
        bad_args: a.create_label(),
    };
    pass_start(&mut a, &mut l)?;
    choose_page(&mut a, &mut l)?;
    touch_page(&mut a, &mut l)?;
    pass_end(&mut a, &mut l)?;
    a.assemble(ip)
}

struct Labels {
    pass: CodeLabel,
    next_page: CodeLabel,
    have_page: CodeLabel,
    by_fract: CodeLabel,
    write: CodeLabel,
    read: CodeLabel,
    advance: CodeLabel,
    no_wrap: CodeLabel,
    done: CodeLabel,
    bad_args: CodeLabel,
}

/// Registers: RCX pages, RBX iteration << 48, R11 wr_fract, R13 generator state, R9 accesses
/// made, R10 position modulo wr_fract, R14 page index, R8 page address; RAX, RDX, R15 scratch.
fn pass_start(a: &mut CodeAssembler, l: &mut Labels) -> Result<(), IcedError> {
    a.set_label(&mut l.pass)?;
    store_tsc(a, args::TSC_START)?;
    a.cmp(qword_ptr(rdi + args::VCPU_ID), rsi)?;
    a.jne(l.bad_args)?;
    a.mov(rcx, qword_ptr(rdi + args::PAGES))?;
    a.mov(rbx, qword_ptr(rdi + args::ITERATION))?;
    a.shl(rbx, 48)?;
    a.mov(r11, qword_ptr(rdi + args::WR_FRACT))?;
    a.mov(r13, qword_ptr(rdi + args::RAND_STATE))?;
    a.xor(r9, r9)?;
    a.xor(r10, r10)
}

/// R14 = the next access's page: R9 in order, or a random draw modulo the pages.
fn choose_page(a: &mut CodeAssembler, l: &mut Labels) -> Result<(), IcedError> {
    a.set_label(&mut l.next_page)?;
    a.cmp(r9, rcx)?;
    a.jae(l.done)?;
    a.mov(r14, r9)?;
    a.cmp(qword_ptr(rdi + args::RANDOM), 0)?;
    a.je(l.have_page)?;
    random_step(a)?;
    a.mov(rax, r13)?;
    a.xor(edx, edx)?;
    a.div(rcx)?;
    a.mov(r14, rdx)?;
    a.set_label(&mut l.have_page)?;
    a.mov(r8, r14)?;
    a.imul_2(r8, qword_ptr(rdi + args::PAGE_SIZE))?;
    a.add(r8, qword_ptr(rdi + args::GVA))
}

/// Writes or reads the page at R8: by write percentage (a draw modulo 100) or by wr_fract.
fn touch_page(a: &mut CodeAssembler, l: &mut Labels) -> Result<(), IcedError> {
    a.cmp(qword_ptr(rdi + args::WRITE_PERCENT), 100)?;
    a.ja(l.by_fract)?;
    random_step(a)?;
    a.mov(rax, r13)?;
    a.xor(edx, edx)?;
    a.mov(r15, 100u64)?;
    a.div(r15)?;
    a.cmp(rdx, qword_ptr(rdi + args::WRITE_PERCENT))?;
    a.jb(l.write)?;
    a.jmp(l.read)?;
    a.set_label(&mut l.by_fract)?;
    a.test(r10, r10)?;
    a.jnz(l.read)?;
    a.set_label(&mut l.write)?;
    a.mov(rax, r8)?;
    a.or(rax, rbx)?;
    a.mov(qword_ptr(r8), rax)?;
    a.jmp(l.advance)?;
    a.set_label(&mut l.read)?;
    a.mov(rax, qword_ptr(r8))?;
    a.set_label(&mut l.advance)?;
    a.inc(r10)?;
    a.cmp(r10, r11)?;
    a.jb(l.no_wrap)?;
    a.xor(r10, r10)?;
    a.set_label(&mut l.no_wrap)?;
    a.inc(r9)?;
    a.mov(qword_ptr(rdi + args::DONE), r9)?;
    a.jmp(l.next_page)
}

/// Saves the generator state, stamps the TSC and exits to the host; the bad-arguments exit.
fn pass_end(a: &mut CodeAssembler, l: &mut Labels) -> Result<(), IcedError> {
    a.set_label(&mut l.done)?;
    a.mov(qword_ptr(rdi + args::RAND_STATE), r13)?;
    store_tsc(a, args::TSC_END)?;
    a.mov(r12, qword_ptr(rdi + args::SYNC))?;
    a.mov(byte_ptr(r12), u32::from(SYNC_DONE))?;
    a.jmp(l.pass)?;

    a.set_label(&mut l.bad_args)?;
    a.mov(r12, qword_ptr(rdi + args::SYNC))?;
    a.mov(byte_ptr(r12), u32::from(SYNC_BAD_ARGS))?;
    a.jmp(l.bad_args)
}

/// R13 = R13 * 48271 mod (2^31 - 1): memstress's guest_random_u32 (clobbers RAX, RDX, R15).
fn random_step(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.imul_3(rax, r13, 48271)?;
    a.xor(edx, edx)?;
    a.mov(r15, 0x7fff_ffffu64)?;
    a.div(r15)?;
    a.mov(r13, rdx)
}

/// Stores the TSC into the argument field at `field` (clobbers RAX and RDX). RDTSC is allowed
/// at CPL 3 because CR4.TSD is clear; it gives the guest's own view of a pass's duration.
fn store_tsc(a: &mut CodeAssembler, field: u64) -> Result<(), IcedError> {
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(qword_ptr(rdi + field), rax)
}

/// A 64-bit GDT: null, flat code (selector 0x08), flat data (selector 0x10), and the same two
/// for user mode (CPL 3: selectors 0x1b and 0x23).
pub const GDT: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00af_fb00_0000_ffff,
    0x00cf_f300_0000_ffff,
];
/// User-mode code segment selector (RPL 3).
pub const USER_CODE_SELECTOR: u16 = 0x1b;
/// User-mode data segment selector (RPL 3).
pub const USER_DATA_SELECTOR: u16 = 0x23;
/// Code segment selector.
pub const CODE_SELECTOR: u16 = 0x08;
/// Data segment selector.
pub const DATA_SELECTOR: u16 = 0x10;

const PTE_PRESENT: u64 = 1;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_ACCESSED: u64 = 1 << 5;
const PTE_DIRTY: u64 = 1 << 6;
const ENTRIES: u64 = 512;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Number of page-table pages needed to map `pages` contiguous 4 KiB pages with 4-level
/// paging, counting one extra table per level for a range that straddles a boundary.
pub fn table_pages_for(pages: u64) -> u64 {
    let pt = pages.div_ceil(ENTRIES) + 1;
    let pd = pt.div_ceil(ENTRIES) + 1;
    let pdpt = pd.div_ceil(ENTRIES) + 1;
    pt + pd + pdpt
}

/// Builds 4-level page tables in slot-0 memory (identity mapped: guest physical address ==
/// offset in `mem`), allocating table pages upwards from a start address.
pub struct PageTables<'a> {
    mem: &'a HostMemory,
    flags: u64,
    /// Guest physical address of the PML4 (the value of CR3).
    pub root: u64,
    next: u64,
    end: u64,
}

impl<'a> PageTables<'a> {
    /// Tables live in `[start, end)` of `mem`; the PML4 is the first page. With `user`, every
    /// mapping is accessible from CPL 3.
    pub fn new(mem: &'a HostMemory, start: u64, end: u64, user: bool) -> Self {
        PageTables {
            mem,
            flags: PTE_PRESENT | PTE_WRITABLE | PTE_ACCESSED | if user { PTE_USER } else { 0 },
            root: start,
            next: start + PAGE_SIZE,
            end,
        }
    }

    /// Maps `pages` 4 KiB pages from `gva` to `gpa`, with Accessed and Dirty preset so the
    /// guest never updates its own tables during the test. Returns `false` when the table area
    /// is exhausted (a sizing bug).
    pub fn map(&mut self, gva: u64, gpa: u64, pages: u64) -> bool {
        (0..pages).all(|i| self.map_page(gva + i * PAGE_SIZE, gpa + i * PAGE_SIZE))
    }

    fn map_page(&mut self, gva: u64, gpa: u64) -> bool {
        let mut table = self.root;
        for level in (1..4).rev() {
            let index = (gva >> (12 + 9 * level)) & (ENTRIES - 1);
            let entry_at = (table + index * 8) as usize;
            let entry = self.mem.read_u64(entry_at);
            table = if entry & PTE_PRESENT != 0 {
                entry & ADDR_MASK
            } else {
                if self.next >= self.end {
                    return false;
                }
                let fresh = self.next;
                self.next += PAGE_SIZE;
                self.mem.write_u64(entry_at, fresh | self.flags);
                fresh
            };
        }
        let index = (gva >> 12) & (ENTRIES - 1);
        self.mem
            .write_u64((table + index * 8) as usize, gpa | self.flags | PTE_DIRTY);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};

    #[test]
    fn guest_code_is_integer_only_and_unprivileged() {
        let code = guest_code(0x2000).unwrap();
        let mut decoder = Decoder::with_ip(64, &code, 0x2000, DecoderOptions::NONE);
        let mut syncs = 0;
        for insn in &mut decoder {
            assert!(!insn.is_invalid());
            // No SSE/AVX: every register operand is a general-purpose register.
            for op in 0..insn.op_count() {
                let reg = insn.op_register(op);
                assert!(
                    reg == iced_x86::Register::None || reg.is_gpr(),
                    "{insn} uses {reg:?}"
                );
            }
            // Nothing that faults at CPL 3.
            let privileged = [
                Mnemonic::Out,
                Mnemonic::In,
                Mnemonic::Hlt,
                Mnemonic::Cli,
                Mnemonic::Sti,
            ];
            assert!(!privileged.contains(&insn.mnemonic()), "{insn}");
            assert_ne!(insn.flow_control(), FlowControl::Call);
            if insn.to_string().starts_with("mov byte ptr [r12]") {
                syncs += 1;
            }
        }
        assert_eq!(syncs, 2);
    }

    #[test]
    fn page_tables_translate() {
        let mem = HostMemory::new(64 * PAGE_SIZE, crate::memory::Backing::Anonymous).unwrap();
        let mut pt = PageTables::new(&mem, 0, 64 * PAGE_SIZE, true);
        assert!(pt.map(0xc000_0000, 0x7fff_0000_0000, 3));
        // Walk by hand: PML4[0] -> PDPT[3] -> PD[0] -> PT[2].
        let walk = |gva: u64| {
            let mut t = pt.root;
            for level in (0..4).rev() {
                let e = mem.read_u64((t + ((gva >> (12 + 9 * level)) & 511) * 8) as usize);
                assert_eq!(e & 0b111, 0b111, "present, writable, user");
                t = e & ADDR_MASK;
            }
            t
        };
        assert_eq!(walk(0xc000_2000), 0x7fff_0000_2000);
        assert_eq!(table_pages_for(1), 6);
    }
}
