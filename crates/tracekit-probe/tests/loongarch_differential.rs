//! The LoongArch64 backend proven against a real LoongArch implementation: QEMU.
//!
//! Every case runs its instruction natively under `qemu-loongarch64-static` (through the
//! oracle program of `testdata/loongarch/oracle.c`) and through tracekit: simulated
//! instructions by [`LoongArch64::simulate`], out-of-line ones from the slot that
//! [`LoongArch64::prepare_slot`] builds, run at another address and fixed up the way the
//! engine's post-handler does. pc, all 32 registers, the signal and the scratch memory must
//! agree; a mismatch prints the instruction (tracekit's and LLVM's disassembly) and both
//! register sets. The case count is printed (`--nocapture`).

use std::process::Command;

use tracekit_probe::breakpoint::arch::loongarch64::{self, Class, Insn, LoongArch64, Op, Regs};
use tracekit_probe::breakpoint::arch::{Arch, Handling, SlotReturn};
use tracekit_probe::breakpoint::transport::Memory;
use tracekit_probe::test_support::loongarch::{self as oracle, Case, Outcome};

/// Deterministic pseudo-random numbers (splitmix64): a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Register values that make comparisons interesting: small, negative, extreme, equal.
    fn value(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(16),
            1 => (-(self.below(16) as i64)) as u64,
            2 => [0, 1, u64::MAX, i64::MAX as u64, i64::MIN as u64][self.below(5) as usize],
            _ => self.next(),
        }
    }
    fn regs(&mut self) -> [u64; 32] {
        let mut r = [0u64; 32];
        for v in r.iter_mut().skip(1) {
            *v = self.value();
        }
        r
    }
}

/// Where an instruction under test is placed: inside the oracle's code region, far enough
/// from its ends that short branches land inside it (and trap on its filler).
fn place(rng: &mut Rng) -> u64 {
    let margin = 0x4_0000;
    oracle::CODE_BASE + margin + rng.below((oracle::CODE_SIZE - 2 * margin) / 4) * 4
}

/// The instruction with its operand fields `fields` (already shifted) over opcode `base`.
fn word(base: u32, fields: u32, mask: u32) -> u32 {
    base | (fields & !mask)
}

/// Random encodings of one simulated op, with the immediates forced to the edges on the first
/// iterations (zero, max positive, max negative, ±1).
fn simulated_word(op: Op, rng: &mut Rng, edge: Option<usize>) -> u32 {
    let r = rng.next() as u32;
    let (base, imm_bits, place_imm): (u32, u32, fn(u32) -> u32) = match op {
        Op::Beqz => (0x4000_0000, 21, |i| (i & 0xffff) << 10 | i >> 16),
        Op::Bnez => (0x4400_0000, 21, |i| (i & 0xffff) << 10 | i >> 16),
        Op::Bceqz => (0x4800_0000, 21, |i| (i & 0xffff) << 10 | i >> 16),
        Op::Bcnez => (0x4800_0100, 21, |i| (i & 0xffff) << 10 | i >> 16),
        Op::Jirl => (0x4c00_0000, 16, |i| i << 10),
        Op::B => (0x5000_0000, 26, |i| (i & 0xffff) << 10 | i >> 16),
        Op::Bl => (0x5400_0000, 26, |i| (i & 0xffff) << 10 | i >> 16),
        Op::Beq => (0x5800_0000, 16, |i| i << 10),
        Op::Bne => (0x5c00_0000, 16, |i| i << 10),
        Op::Blt => (0x6000_0000, 16, |i| i << 10),
        Op::Bge => (0x6400_0000, 16, |i| i << 10),
        Op::Bltu => (0x6800_0000, 16, |i| i << 10),
        Op::Bgeu => (0x6c00_0000, 16, |i| i << 10),
        Op::Pcaddi => (0x1800_0000, 20, |i| i << 5),
        Op::Pcalau12i => (0x1a00_0000, 20, |i| i << 5),
        Op::Pcaddu12i => (0x1c00_0000, 20, |i| i << 5),
        Op::Pcaddu18i => (0x1e00_0000, 20, |i| i << 5),
        _ => unreachable!(),
    };
    let full = (1u32 << imm_bits) - 1;
    let imm = match edge {
        Some(0) => 0,
        Some(1) => full >> 1,       // max positive
        Some(2) => (full >> 1) + 1, // max negative
        Some(3) => 1,
        Some(4) => full, // -1
        _ => r & full,
    };
    let imm_field = place_imm(imm);
    // Operand bits outside the immediate stay random (registers, cj); bceqz/bcnez keep their
    // two selector bits.
    let operands = match op {
        Op::Bceqz | Op::Bcnez => rng.next() as u32 & 0xe0,
        Op::B | Op::Bl => 0,
        Op::Beqz | Op::Bnez => rng.next() as u32 & 0x3e0,
        Op::Pcaddi | Op::Pcalau12i | Op::Pcaddu12i | Op::Pcaddu18i => rng.next() as u32 & 0x1f,
        _ => rng.next() as u32 & 0x3ff,
    };
    word(base, imm_field | operands, 0)
}

const SIMULATED: [Op; 17] = [
    Op::Beqz,
    Op::Bnez,
    Op::Bceqz,
    Op::Bcnez,
    Op::Jirl,
    Op::B,
    Op::Bl,
    Op::Beq,
    Op::Bne,
    Op::Blt,
    Op::Bge,
    Op::Bltu,
    Op::Bgeu,
    Op::Pcaddi,
    Op::Pcalau12i,
    Op::Pcaddu12i,
    Op::Pcaddu18i,
];

/// A case for one simulated instruction: registers chosen so that conditional branches go
/// both ways and `jirl` targets are reachable (inside the code region) or not.
fn simulated_case(op: Op, rng: &mut Rng, edge: Option<usize>) -> Case {
    let w = simulated_word(op, rng, edge);
    let at = place(rng);
    let insn = Insn::decode(w, at);
    let mut regs = rng.regs();
    if rng.below(3) == 0 {
        // Equal operands: beq/bge/bgeu taken, bne/blt/bltu not.
        regs[insn.rd() as usize] = regs[insn.rj() as usize];
    }
    if op == Op::Jirl && rng.below(2) == 0 {
        regs[insn.rj() as usize] = place(rng);
    }
    regs[0] = 0;
    Case {
        at,
        words: vec![w],
        pc: at,
        regs,
        fcc: rng.next() as u8,
        fregs: [0; 32],
    }
}

fn simulate(case: &Case) -> Regs {
    let insn = LoongArch64::decode(&case.words[0].to_le_bytes(), case.at).unwrap();
    let mut regs = Regs {
        gpr: case.regs,
        pc: case.pc,
        fcc: case.fcc,
    };
    LoongArch64::simulate(&insn, &mut regs, &mut NoMemory).unwrap();
    regs
}

/// Simulation never touches memory on LoongArch; this proves it.
struct NoMemory;

impl Memory for NoMemory {
    fn read(&mut self, addr: u64, _: &mut [u8]) -> std::io::Result<()> {
        panic!("simulation read memory at 0x{addr:x}")
    }
    fn write(&mut self, addr: u64, _: &[u8]) -> std::io::Result<()> {
        panic!("simulation wrote memory at 0x{addr:x}")
    }
}

fn llvm_text(word: u32) -> String {
    let bytes: Vec<String> = word
        .to_le_bytes()
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo '{}' | llvm-mc-19 --disassemble --triple=loongarch64 2>&1",
            bytes.join(" ")
        ))
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.contains(".text"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("(llvm-mc-19: {e})"),
    }
}

/// Describes a mismatch: the instruction both ways, and the registers that differ.
fn mismatch(
    case: &Case,
    what: &str,
    who: &str,
    expected: &Outcome,
    got_pc: u64,
    got: &[u64; 32],
) -> String {
    let w = case.words[0];
    let insn = Insn::decode(w, case.at);
    let mut s = format!(
        "{what}: `{insn}` (LLVM: `{}`), word 0x{w:08x} at 0x{:x}, fcc 0b{:08b}\n  pc: QEMU 0x{:x} (signal {}), {who} 0x{got_pc:x}\n",
        llvm_text(w),
        case.at,
        case.fcc,
        expected.pc,
        expected.signal
    );
    for (r, ((before, qemu), ours)) in case.regs.iter().zip(&expected.regs).zip(got).enumerate() {
        let mark = if qemu != ours { "  <-- differs" } else { "" };
        s += &format!(
            "  {:>5} before 0x{before:016x}  QEMU 0x{qemu:016x}  {who} 0x{ours:016x}{mark}\n",
            loongarch64::reg_name(r as u32),
        );
    }
    s
}

/// Checks simulated cases against QEMU with `sim`, returning the mismatch descriptions.
fn check_simulated(cases: &[Case], who: &str, sim: impl Fn(&Case) -> Regs) -> Vec<String> {
    let native = oracle::run(cases).expect("run the oracle under qemu-loongarch64-static");
    assert_eq!(native.len(), cases.len());
    cases
        .iter()
        .zip(&native)
        .filter_map(|(case, qemu)| {
            let got = sim(case);
            (got.pc != qemu.pc || got.gpr != qemu.regs).then(|| {
                mismatch(
                    case,
                    "simulation differs from QEMU",
                    who,
                    qemu,
                    got.pc,
                    &got.gpr,
                )
            })
        })
        .collect()
}

fn simulated_cases(random_per_op: usize) -> Vec<Case> {
    let mut rng = Rng(0x1005_a4c4);
    let mut cases = Vec::new();
    for op in SIMULATED {
        for edge in 0..5 {
            // Each edge immediate with several register states (taken and not taken).
            for _ in 0..8 {
                cases.push(simulated_case(op, &mut rng, Some(edge)));
            }
        }
        for _ in 0..random_per_op {
            cases.push(simulated_case(op, &mut rng, None));
        }
    }
    cases
}

#[test]
fn every_simulated_instruction_matches_qemu() {
    let cases = simulated_cases(200);
    for case in &cases {
        let insn = Insn::decode(case.words[0], case.at);
        assert_eq!(LoongArch64::classify(&insn), Handling::Simulate, "{insn}");
    }
    let bad = check_simulated(&cases, "tracekit", simulate);
    println!(
        "simulated: {} cases ({} ops x (5 edge immediates x 8 + 200 random)), {} mismatches",
        cases.len(),
        SIMULATED.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        cases.len(),
        bad[..bad.len().min(5)].join("\n")
    );
}

/// The seed's `pcaddu18i`: `imm << 18` computed in a 32-bit unsigned int, then sign-extended
/// from bit 37 (which the truncated value never has).
fn seed_pcaddu18i(case: &Case) -> Regs {
    let mut regs = simulate(case);
    let insn = Insn::decode(case.words[0], case.at);
    if insn.op == Op::Pcaddu18i {
        let imm = (case.words[0] >> 5) & 0xf_ffff;
        let shifted = imm.wrapping_shl(18) as u64; // u32 arithmetic, as in C
        let extended = ((shifted << 27) as i64 >> 27) as u64; // sign_extend64(.., 37)
        regs.gpr[insn.rd() as usize] = case.at.wrapping_add(extended);
        regs.gpr[0] = 0;
    }
    regs
}

#[test]
fn the_seed_pcaddu18i_bug_is_caught() {
    let cases: Vec<Case> = simulated_cases(200)
        .into_iter()
        .filter(|c| Insn::decode(c.words[0], c.at).op == Op::Pcaddu18i)
        .collect();
    let bad = check_simulated(&cases, "seed", seed_pcaddu18i);
    println!(
        "seed pcaddu18i: {} of {} cases differ from QEMU, e.g.\n{}",
        bad.len(),
        cases.len(),
        bad.first().map(String::as_str).unwrap_or("")
    );
    // Every case whose rd is not $zero and whose immediate is negative or ≥ 2^14 is wrong.
    assert!(
        bad.len() > cases.len() / 2,
        "only {} of {} caught",
        bad.len(),
        cases.len()
    );
    assert!(bad[0].contains("<-- differs"));
}

/// Mnemonics left out of the random out-of-line set: their result is not a function of the
/// registers (time counters), or running them with random registers would end the oracle
/// (system calls). Extensions QEMU 7.2 does not implement (LSX, LASX, LBT) are left out too:
/// they would only compare SIGILL with SIGILL.
fn excluded(name: &str) -> bool {
    name.starts_with("rdtime")
        || [
            "v",
            "xv",
            "x86",
            "arm",
            "setx86",
            "setarm",
            "movgr2scr",
            "movscr2gr",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

fn out_of_line_cases(n: usize) -> Vec<(Case, Case)> {
    let mut rng = Rng(0x00f1_1e5e);
    let table: Vec<_> = loongarch64_opcodes()
        .iter()
        .filter(|(_, m, name)| {
            !excluded(name)
                && matches!(Insn::decode(*m, 0).class(), Class::Ordinary | Class::Atomic)
        })
        .collect();
    let mut out = Vec::new();
    while out.len() < n {
        let &&(mask, m, _) = &table[rng.below(table.len() as u64) as usize];
        let w = m | (rng.next() as u32 & !mask);
        let at = place(&mut rng);
        let insn = Insn::decode(w, at);
        if !matches!(insn.class(), Class::Ordinary | Class::Atomic) {
            continue; // the random operand bits made it something more specific
        }
        let mut regs = rng.regs();
        if rng.below(3) != 0 {
            // Memory operands in the scratch area, so loads, stores and atomics really run.
            let mid = oracle::SCRATCH_BASE + oracle::SCRATCH_SIZE / 2;
            regs[insn.rj() as usize] = mid + rng.below(256) * 8;
            regs[((w >> 10) & 31) as usize] = rng.below(64) * 8;
        }
        regs[0] = 0;
        let ret = if rng.below(2) == 0 {
            SlotReturn::Breakpoint
        } else {
            SlotReturn::Jump
        };
        let slot = loop {
            let s = place(&mut rng);
            if s.abs_diff(at) >= 16 {
                break s;
            }
        };
        let bytes = LoongArch64::prepare_slot(&insn, slot, ret)
            .expect("slot for an out-of-line instruction");
        let words = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let fcc = rng.next() as u8;
        // FP registers: random bit patterns and ordinary doubles, so FP instructions compute.
        let fregs: [u64; 32] = std::array::from_fn(|_| match rng.below(3) {
            0 => rng.next(),
            1 => ((rng.below(2000) as f64 - 1000.0) / 8.0).to_bits(),
            _ => (rng.below(100) as f32).to_bits() as u64 | 0xffff_ffff_0000_0000,
        });
        let native = Case {
            at,
            words: vec![w],
            pc: at,
            regs,
            fcc,
            fregs,
        };
        out.push((
            native,
            Case {
                at: slot,
                words,
                pc: slot,
                regs,
                fcc,
                fregs,
            },
        ));
    }
    out
}

fn loongarch64_opcodes() -> &'static [(u32, u32, &'static str)] {
    tracekit_probe::breakpoint::arch::loongarch64::opcodes::OPCODES
}

/// Where the engine puts a thread that stopped in a slot: the slot's return `break` is the
/// post-handler (resume after the original), a fault on the copy is a fault of the original.
fn fix_up(slot_case: &Case, original: u64, pc: u64) -> u64 {
    match pc.wrapping_sub(slot_case.at) {
        0 => original,
        4 => original + 4,
        _ => pc,
    }
}

#[test]
fn every_out_of_line_instruction_matches_qemu_from_its_slot() {
    let pairs = out_of_line_cases(3000);
    let cases: Vec<Case> = pairs
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let outcomes = oracle::run(&cases).expect("run the oracle under qemu-loongarch64-static");
    let mut bad = Vec::new();
    let mut completed = 0;
    let mut fp_changed = 0;
    for (i, (native_case, slot_case)) in pairs.iter().enumerate() {
        let (native, slot) = (&outcomes[2 * i], &outcomes[2 * i + 1]);
        let pc = fix_up(slot_case, native_case.at, slot.pc);
        completed += usize::from(native.pc == native_case.at + 4);
        let fp_same =
            slot.fregs == native.fregs && slot.fcc == native.fcc && slot.fcsr == native.fcsr;
        fp_changed +=
            usize::from(native.fregs != native_case.fregs || native.fcc != native_case.fcc);
        if pc != native.pc
            || slot.signal != native.signal
            || slot.regs != native.regs
            || slot.scratch_hash != native.scratch_hash
            || !fp_same
        {
            let mut m = mismatch(
                native_case,
                "out-of-line slot differs from QEMU at the original address",
                "slot",
                native,
                pc,
                &slot.regs,
            );
            m += &format!(
                "  signal: QEMU {} slot {}; scratch hash equal: {}; FP registers, fcc, fcsr equal: {fp_same}\n",
                native.signal,
                slot.signal,
                slot.scratch_hash == native.scratch_hash
            );
            bad.push(m);
        }
    }
    let names: std::collections::BTreeSet<_> = pairs
        .iter()
        .map(|(c, _)| Insn::decode(c.words[0], 0).mnemonic())
        .collect();
    println!(
        "out of line: {} instructions ({} mnemonics; {} ran to completion, the rest faulted alike; {} changed FP state), {} runs, {} mismatches",
        pairs.len(),
        names.len(),
        completed,
        fp_changed,
        cases.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        pairs.len(),
        bad[..bad.len().min(5)].join("\n")
    );
    assert!(
        completed > pairs.len() / 2,
        "most instructions must really run, not fault: {completed}"
    );
}

/// Running a PC-relative instruction from a slot gives a wrong result: why they are simulated.
#[test]
fn pc_relative_instructions_cannot_run_out_of_line() {
    let mut rng = Rng(7);
    let insn = Insn::decode(0x1c00_0000 | 0x123 << 5 | 12, place(&mut rng)); // pcaddu12i $t0, 0x123
    assert!(LoongArch64::prepare_slot(&insn, insn.addr + 0x100, SlotReturn::Breakpoint).is_err());
    let slot = insn.addr + 0x100;
    let case = |at| Case::new(at, vec![insn.word]);
    let out = oracle::run(&[case(insn.addr), case(slot)]).unwrap();
    assert_eq!(out[0].regs[12], insn.addr + (0x123 << 12));
    assert_eq!(
        out[1].regs[12],
        slot + (0x123 << 12),
        "a copy computes from the slot's address"
    );
}

/// LLVM's disassembler (`llvm-mc-19`) on `words`: the mnemonic of each word it decodes.
fn llvm_mnemonics(words: &[u32]) -> std::collections::HashMap<u32, String> {
    use std::io::Write;
    let mut child = Command::new("llvm-mc-19")
        .args(["--disassemble", "--show-encoding", "--triple=loongarch64"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("llvm-mc-19 (Debian's llvm-19, installed by cargo xtask test)");
    let mut input = String::new();
    for w in words {
        let b = w.to_le_bytes();
        input += &format!(
            "0x{:02x} 0x{:02x} 0x{:02x} 0x{:02x}\n",
            b[0], b[1], b[2], b[3]
        );
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let mut found = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((text, enc)) = line.split_once("# encoding: [") else {
            continue;
        };
        let bytes: Vec<u8> = enc
            .trim_end_matches(']')
            .split(',')
            .filter_map(|b| u8::from_str_radix(b.trim().trim_start_matches("0x"), 16).ok())
            .collect();
        if let (Ok(b), Some(m)) = (<[u8; 4]>::try_from(bytes), text.split_whitespace().next()) {
            found.insert(u32::from_le_bytes(b), m.to_string());
        }
    }
    found
}

/// The decoder names every word LLVM decodes the way LLVM does, and refuses as unknown
/// every word LLVM does not decode: random words, random opcodes with zero operands, and two
/// random encodings of every table entry.
#[test]
fn decoding_agrees_with_llvm() {
    let mut rng = Rng(0x11_7a);
    let mut words: Vec<u32> = (0..20_000).map(|_| rng.next() as u32).collect();
    words.extend((0..20_000).map(|_| (rng.next() as u32) & !0x3ff));
    for &(mask, m, _) in loongarch64_opcodes() {
        words.extend((0..2).map(|_| m | (rng.next() as u32 & !mask)));
    }
    let llvm = llvm_mnemonics(&words);
    let alias = |m: &str| -> String {
        match m {
            "ret" | "jr" => "jirl".into(),
            other => other.into(),
        }
    };
    let mut bad = Vec::new();
    for &w in &words {
        let insn = Insn::decode(w, 0);
        let ours = match insn.op {
            Op::Unknown => None,
            _ => Some(insn.mnemonic().to_string()),
        };
        let theirs = llvm.get(&w).map(|m| alias(m));
        if ours != theirs {
            bad.push(format!("0x{w:08x}: tracekit {ours:?}, LLVM {theirs:?}"));
        }
    }
    println!(
        "decoding: {} words, {} decoded by LLVM, {} disagreements",
        words.len(),
        llvm.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {} words disagree:\n{}",
        bad.len(),
        words.len(),
        bad[..bad.len().min(30)].join("\n")
    );
}
