//! The LoongArch64 execution oracle (`testdata/loongarch/oracle.c` under
//! `qemu-loongarch64-static`) itself: exact outcomes for cases whose results are known.

use std::time::Instant;

use tracekit_probe::test_support::loongarch::{
    self, CODE_BASE, CODE_SIZE, Case, FILLER, Outcome, SCRATCH_BASE, TIMEOUT_SIGNAL, scratch_hash,
    scratch_init,
};

const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGSEGV: i32 = 11;
/// Not mapped in the oracle's address space (far above CODE and SCRATCH).
const UNMAPPED: u64 = 0x50_0000_0000;

/// The few encodings these tests need (checked against clang-19 by `encoder_matches_clang`).
mod enc {
    fn ri12(op: u32, rd: u32, rj: u32, imm: i32) -> u32 {
        op | ((imm as u32) & 0xfff) << 10 | rj << 5 | rd
    }
    fn offs26(op: u32, byte_offset: i32) -> u32 {
        let offs = (byte_offset >> 2) as u32;
        op | (offs & 0xffff) << 10 | (offs >> 16) & 0x3ff
    }
    fn offs21(op: u32, cj: u32, byte_offset: i32) -> u32 {
        let offs = (byte_offset >> 2) as u32;
        op | (offs & 0xffff) << 10 | cj << 5 | (offs >> 16) & 0x1f
    }
    pub fn addi_d(rd: u32, rj: u32, imm: i32) -> u32 {
        ri12(0x02c0_0000, rd, rj, imm)
    }
    pub fn st_d(rd: u32, rj: u32, imm: i32) -> u32 {
        ri12(0x29c0_0000, rd, rj, imm)
    }
    pub fn ld_d(rd: u32, rj: u32, imm: i32) -> u32 {
        ri12(0x28c0_0000, rd, rj, imm)
    }
    pub fn b(byte_offset: i32) -> u32 {
        offs26(0x5000_0000, byte_offset)
    }
    pub fn bl(byte_offset: i32) -> u32 {
        offs26(0x5400_0000, byte_offset)
    }
    pub fn bceqz(cj: u32, byte_offset: i32) -> u32 {
        offs21(0x4800_0000, cj, byte_offset)
    }
    pub fn bcnez(cj: u32, byte_offset: i32) -> u32 {
        // Bits 9:8 of the condition field are 0b00 for bceqz and 0b01 for bcnez.
        offs21(0x4800_0000, cj, byte_offset) | 0x100
    }
    pub fn jirl(rd: u32, rj: u32, byte_offset: i32) -> u32 {
        0x4c00_0000 | (((byte_offset >> 2) as u32) & 0xffff) << 10 | rj << 5 | rd
    }
    pub fn movcf2gr(rd: u32, cj: u32) -> u32 {
        0x0114_dc00 | cj << 5 | rd
    }
    pub fn brk(code: u32) -> u32 {
        0x002a_0000 | code
    }
}

fn run(cases: &[Case]) -> Vec<Outcome> {
    let out = loongarch::run(cases).expect("the oracle runs");
    assert_eq!(out.len(), cases.len());
    out
}

fn run1(case: Case) -> Outcome {
    run(&[case]).remove(0)
}

/// Registers all different and non-zero, so a misplaced one shows.
fn distinct_regs() -> [u64; 32] {
    std::array::from_fn(|i| 0x0101_0101_0101_0101u64.wrapping_mul(i as u64) ^ 0xa5a5_0000_0000_5a5a)
}

fn pristine_hash() -> u64 {
    scratch_hash(&scratch_init())
}

#[test]
fn encoder_matches_clang() {
    let asm = "addi.d $r12, $r0, 5\naddi.d $r31, $r7, -2048\nst.d $r12, $r13, -16\nld.d $r4, $r5, 2047\n\
               b 8\nb -8\nb 0x1000000\nbl 8\nbl -0x8000000\nbceqz $fcc3, 8\nbcnez $fcc3, 8\nbceqz $fcc7, -8\n\
               jirl $r1, $r12, 0\njirl $r0, $r1, -4\nmovcf2gr $r12, $fcc5\nbreak 0\nbreak 1\nbreak 0x7fff\n";
    let ours = [
        enc::addi_d(12, 0, 5),
        enc::addi_d(31, 7, -2048),
        enc::st_d(12, 13, -16),
        enc::ld_d(4, 5, 2047),
        enc::b(8),
        enc::b(-8),
        enc::b(0x100_0000),
        enc::bl(8),
        enc::bl(-0x800_0000),
        enc::bceqz(3, 8),
        enc::bcnez(3, 8),
        enc::bceqz(7, -8),
        enc::jirl(1, 12, 0),
        enc::jirl(0, 1, -4),
        enc::movcf2gr(12, 5),
        enc::brk(0),
        enc::brk(1),
        enc::brk(0x7fff),
    ];
    assert_eq!(assemble(asm), ours);
    assert_eq!(FILLER, enc::brk(1));
}

/// The words clang-19's assembler makes of `asm`.
fn assemble(asm: &str) -> Vec<u32> {
    use object::{Object, ObjectSection};
    let dir = std::env::temp_dir().join(format!("tk-la-enc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, obj) = (dir.join("enc.s"), dir.join("enc.o"));
    std::fs::write(&src, asm).unwrap();
    let status = std::process::Command::new("clang-19")
        .args(["--target=loongarch64-linux-gnu", "-c", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .expect("clang-19 must be installed (cargo xtask test installs it)");
    assert!(
        status.success(),
        "clang-19 could not assemble the encoder checks"
    );
    let data = std::fs::read(&obj).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file
        .section_by_name(".text")
        .unwrap()
        .data()
        .unwrap()
        .to_vec();
    std::fs::remove_dir_all(&dir).ok();
    text.chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

#[test]
fn addi_sets_its_register_and_keeps_all_others() {
    let mut case = Case::new(CODE_BASE, vec![enc::addi_d(12, 0, 5)]);
    case.regs = distinct_regs();
    let out = run1(case.clone());
    let mut want = case.regs;
    want[0] = 0;
    want[12] = 5;
    assert_eq!(
        out,
        Outcome {
            signal: SIGTRAP,
            pc: CODE_BASE + 4,
            regs: want,
            scratch_hash: pristine_hash(),
            fregs: [0; 32],
            fcc: 0,
            fcsr: 0,
        }
    );
}

#[test]
fn r0_reads_as_zero_whatever_the_case_says() {
    let mut case = Case::new(CODE_BASE + 0x40, vec![enc::addi_d(4, 0, 7)]);
    case.regs[0] = 0xdead_beef;
    let out = run1(case);
    assert_eq!(out.regs[0], 0);
    assert_eq!(out.regs[4], 7, "addi.d read r0 as 0");
}

#[test]
fn branch_forward_lands_exactly() {
    let at = CODE_BASE + 0x1000;
    let out = run1(Case::new(at, vec![enc::b(8)]));
    assert_eq!((out.signal, out.pc), (SIGTRAP, at + 8));
}

#[test]
fn bl_sets_ra_to_the_next_instruction() {
    let at = CODE_BASE + 0x2000;
    let out = run1(Case::new(at, vec![enc::bl(8)]));
    assert_eq!((out.signal, out.pc, out.regs[1]), (SIGTRAP, at + 8, at + 4));
}

#[test]
fn pc_may_differ_from_at() {
    let at = CODE_BASE + 0x3000;
    let mut case = Case::new(at, vec![enc::addi_d(12, 12, 1), enc::addi_d(12, 12, 2)]);
    case.pc = at + 4;
    let out = run1(case);
    assert_eq!((out.signal, out.pc, out.regs[12]), (SIGTRAP, at + 8, 2));
}

#[test]
fn branch_out_of_code_reports_the_target() {
    let out = run1(Case::new(CODE_BASE, vec![enc::b(-0x10_0000)]));
    assert_eq!((out.signal, out.pc), (SIGSEGV, CODE_BASE - 0x10_0000));
    let end = CODE_BASE + CODE_SIZE - 4;
    let out = run1(Case::new(end, vec![enc::b(0x1000)]));
    assert_eq!((out.signal, out.pc), (SIGSEGV, end + 0x1000));
}

#[test]
fn jirl_to_an_unmapped_address_reports_the_target() {
    let mut case = Case::new(CODE_BASE, vec![enc::jirl(1, 12, 0)]);
    case.regs[12] = UNMAPPED;
    let out = run1(case);
    assert_eq!(
        (out.signal, out.pc, out.regs[1]),
        (SIGSEGV, UNMAPPED, CODE_BASE + 4)
    );
}

#[test]
fn jirl_to_a_misaligned_target_executes_there() {
    // QEMU 7.2 raises no address error: it decodes the filler's bytes at +2 (0x0001002a,
    // not an instruction) and reports SIGILL there.
    let mut case = Case::new(CODE_BASE + 0x100, vec![enc::jirl(0, 12, 0)]);
    case.regs[12] = CODE_BASE + 0x202;
    let out = run1(case);
    assert_eq!((out.signal, out.pc), (SIGILL, CODE_BASE + 0x202));
}

#[test]
fn every_break_code_is_sigtrap_at_the_break() {
    for code in [0, 1, 5, 6, 7, 0x7fff] {
        let at = CODE_BASE + 0x4000;
        let out = run1(Case::new(at, vec![enc::addi_d(12, 0, 1), enc::brk(code)]));
        assert_eq!(
            (out.signal, out.pc, out.regs[12]),
            (SIGTRAP, at + 4, 1),
            "break {code}"
        );
    }
}

#[test]
fn load_from_unmapped_faults_at_the_load() {
    let mut case = Case::new(CODE_BASE + 0x5000, vec![enc::ld_d(12, 13, 8)]);
    case.regs[12] = 0x1234;
    case.regs[13] = UNMAPPED;
    let out = run1(case);
    assert_eq!(
        (out.signal, out.pc, out.regs[12]),
        (SIGSEGV, CODE_BASE + 0x5000, 0x1234)
    );
}

#[test]
fn load_reads_the_scratch_pattern() {
    let mut case = Case::new(CODE_BASE, vec![enc::ld_d(12, 13, 16)]);
    case.regs[13] = SCRATCH_BASE + 0x100;
    let out = run1(case);
    let init = scratch_init();
    let want = u64::from_le_bytes(init[0x110..0x118].try_into().unwrap());
    assert_eq!((out.signal, out.regs[12]), (SIGTRAP, want));
}

#[test]
fn store_changes_scratch_hash_and_scratch_is_refilled() {
    let mut store = Case::new(CODE_BASE, vec![enc::st_d(12, 13, -8)]);
    store.regs[12] = 0x1122_3344_5566_7788;
    store.regs[13] = SCRATCH_BASE + 0x10;
    let nop = Case::new(CODE_BASE, vec![enc::addi_d(0, 0, 0)]);
    let out = run(&[nop.clone(), store, nop]);
    let mut want = scratch_init();
    want[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(out[0].scratch_hash, pristine_hash());
    assert_eq!(out[1].scratch_hash, scratch_hash(&want));
    assert_ne!(out[1].scratch_hash, out[0].scratch_hash);
    assert_eq!(
        out[2].scratch_hash,
        pristine_hash(),
        "SCRATCH is refilled before each case"
    );
    assert_eq!(out[1].pc, CODE_BASE + 4);
}

#[test]
fn fcc_bits_decide_bceqz_and_bcnez() {
    let at = CODE_BASE + 0x800;
    let case = |word: u32, fcc: u8| {
        let mut c = Case::new(at, vec![word]);
        c.fcc = fcc;
        c
    };
    let cases = [
        case(enc::bceqz(3, 8), 0),
        case(enc::bceqz(3, 8), 1 << 3),
        case(enc::bceqz(3, 8), !(1 << 3)),
        case(enc::bcnez(3, 8), 1 << 3),
        case(enc::bcnez(3, 8), !(1 << 3)),
    ];
    let pcs: Vec<u64> = run(&cases).iter().map(|o| o.pc).collect();
    assert_eq!(pcs, [at + 8, at + 4, at + 8, at + 8, at + 4]);
}

#[test]
fn each_fcc_bit_reaches_its_flag() {
    let cases: Vec<Case> = (0..8)
        .map(|bit| {
            let words = (0..8).map(|cj| enc::movcf2gr(12 + cj, cj)).collect();
            let mut c = Case::new(CODE_BASE + 0x100 * bit as u64, words);
            c.fcc = 1 << bit;
            c
        })
        .collect();
    for (bit, out) in run(&cases).iter().enumerate() {
        let flags: Vec<u64> = out.regs[12..20].to_vec();
        let want: Vec<u64> = (0..8).map(|cj| u64::from(cj == bit)).collect();
        assert_eq!(flags, want, "fcc = 1 << {bit}");
    }
}

#[test]
fn previous_case_words_are_gone() {
    let two = Case::new(
        CODE_BASE,
        vec![enc::addi_d(12, 12, 1), enc::addi_d(12, 12, 1)],
    );
    let one = Case::new(CODE_BASE, vec![enc::addi_d(12, 12, 1)]);
    let out = run(&[two, one]);
    assert_eq!((out[0].pc, out[0].regs[12]), (CODE_BASE + 8, 2));
    assert_eq!(
        (out[1].pc, out[1].regs[12]),
        (CODE_BASE + 4, 1),
        "the filler is back at +4"
    );
}

#[test]
fn an_endless_loop_times_out_and_the_next_case_runs() {
    let at = CODE_BASE + 0x6000;
    let out = run(&[
        Case::new(at, vec![enc::b(0)]),
        Case::new(at, vec![enc::addi_d(12, 0, 3)]),
    ]);
    assert_eq!((out[0].signal, out[0].pc), (TIMEOUT_SIGNAL, at));
    assert_eq!(
        (out[1].signal, out[1].pc, out[1].regs[12]),
        (SIGTRAP, at + 4, 3)
    );
}

#[test]
fn cases_outside_code_are_refused() {
    for at in [CODE_BASE - 4, CODE_BASE + CODE_SIZE, CODE_BASE + 2] {
        let err = loongarch::run(&[Case::new(at, vec![enc::addi_d(0, 0, 0)])]).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "at {at:#x}: {err}"
        );
    }
    let err = loongarch::run(&[Case::new(CODE_BASE + CODE_SIZE - 4, vec![0, 0])]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

/// xorshift64*: reproducible random cases without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn random_addi_cases(n: usize, seed: u64) -> (Vec<Case>, Vec<Outcome>) {
    let mut rng = Rng(seed);
    let hash = pristine_hash();
    (0..n)
        .map(|_| {
            let (rd, rj) = ((rng.next() % 32) as u32, (rng.next() % 32) as u32);
            let imm = (rng.next() % 4096) as i32 - 2048;
            let at = CODE_BASE + (rng.next() % (CODE_SIZE / 4 - 1)) * 4;
            let mut case = Case::new(at, vec![enc::addi_d(rd, rj, imm)]);
            case.regs = std::array::from_fn(|_| rng.next());
            case.fcc = rng.next() as u8;
            case.fregs = std::array::from_fn(|_| rng.next());
            let (fregs, fcc) = (case.fregs, case.fcc);
            let mut regs = case.regs;
            regs[0] = 0;
            if rd != 0 {
                regs[rd as usize] = regs[rj as usize].wrapping_add(imm as i64 as u64);
            }
            (
                case,
                Outcome {
                    signal: SIGTRAP,
                    pc: at + 4,
                    regs,
                    scratch_hash: hash,
                    fregs,
                    fcc,
                    fcsr: 0,
                },
            )
        })
        .unzip()
}

fn check_random_addi(n: usize, seed: u64) {
    let (cases, want) = random_addi_cases(n, seed);
    let start = Instant::now();
    let got = run(&cases);
    eprintln!(
        "la-oracle: {n} random addi.d cases in {:?}",
        start.elapsed()
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "case {i}: {:?}", cases[i]);
    }
}

#[test]
fn random_addi_2000() {
    check_random_addi(2000, 0x5eed_0001);
}

#[test]
fn random_addi_10000() {
    check_random_addi(10_000, 0x5eed_0002);
}

#[test]
fn fp_registers_go_in_and_come_back() {
    // fadd.d $f2, $f0, $f1 with f0 = 1.5, f1 = 2.25; f5 keeps its bit pattern.
    let mut case = Case::new(CODE_BASE, vec![0x0101_0402]);
    case.fregs[0] = 1.5f64.to_bits();
    case.fregs[1] = 2.25f64.to_bits();
    case.fregs[5] = 0x0123_4567_89ab_cdef;
    case.fcc = 0b1000_0001;
    let out = run1(case);
    assert_eq!((out.signal, out.pc), (SIGTRAP, CODE_BASE + 4));
    assert_eq!(f64::from_bits(out.fregs[2]), 3.75);
    assert_eq!(out.fregs[5], 0x0123_4567_89ab_cdef);
    assert_eq!(out.fcc, 0b1000_0001);
}
