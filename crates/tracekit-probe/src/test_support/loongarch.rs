//! A native execution oracle for LoongArch64 instructions: runs [`Case`]s in
//! `testdata/loongarch/oracle.c` under `qemu-loongarch64-static` and returns the state each one
//! ends in, so tests can compare tracekit's instruction simulation with real execution.
//!
//! A case's words are written at [`Case::at`] inside CODE (the rest of CODE holds [`FILLER`],
//! `break 1`); execution starts at [`Case::pc`] with exactly [`Case::regs`] and [`Case::fcc`]
//! (FP registers and fcsr 0) and SCRATCH holding [`scratch_init`]. The case ends at the first
//! signal: usually the filler's SIGTRAP right after the case's words. The [`Outcome`] holds the
//! signal, the pc and registers the signal frame reports, and the [`scratch_hash`] of SCRATCH.
//!
//! Wire format (little-endian; the C file's header says the same):
//! - input: header `u32 magic 0x324f414c ("LAO2"), u32 count, u32 timeout_ms, u32 0,
//!   u64 payload_len`, then per case `u64 at, u64 pc, u64 regs[32], u64 fregs[32], u32 nwords, u32 fcc,
//!   u32 words[nwords]`, padded with 4 zero bytes when nwords is odd;
//! - output: header `u32 magic 0x3252414c ("LAR2"), u32 count, u64 0`, then 544 bytes per
//!   case: `i32 signal, u32 0, u64 pc, u64 regs[32], u64 scratch_hash, u64 fregs[32], u32 fcc,
//!   u32 fcsr`.
//!
//! What QEMU 7.2 (linux-user) does, measured with this oracle:
//! - The signal frame: `struct sigcontext` at ucontext+176 (`sc_pc`@176, `sc_regs[32]`@184,
//!   `sc_flags`@440, `sc_extcontext`@448); the first extcontext record is the FPU one (magic
//!   0x46505501, size 0x250) with `f[32]`@+16, `fcc`@+272 (fcc i in byte i), `fcsr`@+280.
//!   rt_sigreturn restores pc, all registers and fcc from it.
//! - `break N` (N = 0, 1, 5, 7 alike): SIGTRAP (si_code TRAP_BRKPT) with pc = the `break`
//!   itself, not past it (a real kernel turns some codes, e.g. 7, into SIGFPE).
//! - A jump or branch to an unmapped address: SIGSEGV (SEGV_MAPERR) with pc = the target.
//! - A load or store at an unmapped address: SIGSEGV with pc = the load/store, which has not
//!   written its destination. Misaligned loads do not fault.
//! - A `jirl` to a target that is not 4-aligned raises no address error: QEMU fetches the
//!   word at the misaligned address (among the filler that decodes as illegal: SIGILL with
//!   pc = the target).
//! - An unknown syscall number returns -ENOSYS in a0 (no SIGSYS).
//! - `MAP_FIXED_NOREPLACE` is only a hint (a taken range gives another address; the oracle
//!   checks the address it got).

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};

/// Where CODE starts; [`Case::at`] and its words must lie in `CODE_BASE..CODE_BASE + CODE_SIZE`.
pub const CODE_BASE: u64 = 0x10_0000_0000;
/// Size of CODE (1 MiB), mapped read-write-execute.
pub const CODE_SIZE: u64 = 0x10_0000;
/// Where SCRATCH starts: read-write memory for cases' loads and stores.
pub const SCRATCH_BASE: u64 = 0x20_0000_0000;
/// Size of SCRATCH (64 KiB).
pub const SCRATCH_SIZE: u64 = 0x1_0000;
/// `break 1`, the word that fills CODE around each case.
pub const FILLER: u32 = 0x002a_0001;
/// CPU time a case may use before it is stopped with [`TIMEOUT_SIGNAL`].
pub const CASE_TIMEOUT_MS: u32 = 100;
/// The signal of a case stopped for using up [`CASE_TIMEOUT_MS`] (SIGVTALRM); its pc and
/// registers are wherever it was then.
pub const TIMEOUT_SIGNAL: i32 = 26;
/// At most this many cases run in one QEMU process.
pub const BATCH: usize = 20_000;

const QEMU: &str = "qemu-loongarch64-static";
const IN_MAGIC: u32 = 0x324f_414c;
const OUT_MAGIC: u32 = 0x3252_414c;
const OUT_HEADER: usize = 16;
const OUTCOME_SIZE: usize = 544;

/// One case: words to place in CODE and the state to start them in.
#[derive(Debug, Clone)]
pub struct Case {
    /// Where the words go: 4-aligned, inside CODE.
    pub at: u64,
    /// The instruction words, written for this case only.
    pub words: Vec<u32>,
    /// Where execution starts (usually `at`).
    pub pc: u64,
    /// Registers r0..r31 at the start (r0 is always 0 whatever this says).
    pub regs: [u64; 32],
    /// FP condition flags at the start: bit i = fcc i.
    pub fcc: u8,
    /// FP registers f0..f31 at the start (raw 64-bit contents).
    pub fregs: [u64; 32],
}

impl Case {
    /// A case starting at `at` with all registers and flags 0.
    pub fn new(at: u64, words: Vec<u32>) -> Self {
        Case {
            at,
            words,
            pc: at,
            regs: [0; 32],
            fcc: 0,
            fregs: [0; 32],
        }
    }
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The signal that ended it (5 SIGTRAP when it ran into the filler).
    pub signal: i32,
    /// The pc the signal frame reports.
    pub pc: u64,
    /// Registers r0..r31 the signal frame reports.
    pub regs: [u64; 32],
    /// [`scratch_hash`] of SCRATCH at the signal.
    pub scratch_hash: u64,
    /// FP registers f0..f31 the signal frame reports.
    pub fregs: [u64; 32],
    /// FP condition flags the signal frame reports: bit i = fcc i.
    pub fcc: u8,
    /// The FP control and status register.
    pub fcsr: u32,
}

/// SCRATCH's contents at the start of every case: byte i = (i * 131 + 7) mod 256.
pub fn scratch_init() -> Vec<u8> {
    (0..SCRATCH_SIZE as usize)
        .map(|i| (i * 131 + 7) as u8)
        .collect()
}

/// FNV-1a 64 of `bytes`, the hash the oracle reports for SCRATCH.
pub fn scratch_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs every case under `qemu-loongarch64-static`, [`BATCH`] cases per process, and returns
/// their outcomes in order.
pub fn run(cases: &[Case]) -> io::Result<Vec<Outcome>> {
    for (i, case) in cases.iter().enumerate() {
        check(case).map_err(|why| invalid(format!("case {i}: {why}")))?;
    }
    let oracle = super::compile_loongarch("loongarch/oracle.c", "la-oracle");
    let mut outcomes = Vec::with_capacity(cases.len());
    for batch in cases.chunks(BATCH) {
        outcomes.extend(run_batch(&oracle, batch)?);
    }
    Ok(outcomes)
}

fn check(case: &Case) -> Result<(), String> {
    let len = case.words.len() as u64 * 4;
    if !case.at.is_multiple_of(4) {
        return Err(format!("at {:#x} is not 4-aligned", case.at));
    }
    if !(CODE_BASE..CODE_BASE + CODE_SIZE).contains(&case.at)
        || len > CODE_BASE + CODE_SIZE - case.at
    {
        return Err(format!(
            "words at {:#x}..{:#x} are not inside CODE",
            case.at,
            case.at + len
        ));
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn run_batch(oracle: &std::path::Path, cases: &[Case]) -> io::Result<Vec<Outcome>> {
    let input = encode(cases);
    let mut child = Command::new(QEMU)
        .arg(oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{QEMU} must be installed to run the LoongArch oracle: {e}"),
            )
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (written, output, errors) = std::thread::scope(|s| {
        // The oracle reads all its input before it writes anything; separate threads still
        // keep a failing oracle's output from blocking us.
        let writer = s.spawn(move || stdin.write_all(&input));
        let err_reader = s.spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).map(|_| text)
        });
        let mut out = Vec::new();
        let read = stdout.read_to_end(&mut out).map(|_| out);
        (
            writer.join().expect("stdin writer"),
            read,
            err_reader.join().expect("stderr reader"),
        )
    });
    let status = child.wait()?;
    let errors = errors.unwrap_or_default();
    if !status.success() {
        return Err(io::Error::other(format!(
            "la-oracle under {QEMU} failed ({status}): {}",
            errors.trim()
        )));
    }
    written
        .map_err(|e| io::Error::new(e.kind(), format!("writing the cases to la-oracle: {e}")))?;
    decode(&output?, cases.len())
}

fn encode(cases: &[Case]) -> Vec<u8> {
    let mut payload = Vec::new();
    for case in cases {
        payload.extend(case.at.to_le_bytes());
        payload.extend(case.pc.to_le_bytes());
        case.regs
            .iter()
            .chain(&case.fregs)
            .for_each(|r| payload.extend(r.to_le_bytes()));
        payload.extend((case.words.len() as u32).to_le_bytes());
        payload.extend(u32::from(case.fcc).to_le_bytes());
        case.words
            .iter()
            .for_each(|w| payload.extend(w.to_le_bytes()));
        if case.words.len() % 2 == 1 {
            payload.extend([0; 4]);
        }
    }
    let mut input = Vec::with_capacity(24 + payload.len());
    input.extend(IN_MAGIC.to_le_bytes());
    input.extend((cases.len() as u32).to_le_bytes());
    input.extend(CASE_TIMEOUT_MS.to_le_bytes());
    input.extend(0u32.to_le_bytes());
    input.extend((payload.len() as u64).to_le_bytes());
    input.extend(payload);
    input
}

fn decode(output: &[u8], count: usize) -> io::Result<Vec<Outcome>> {
    let expected = OUT_HEADER + count * OUTCOME_SIZE;
    if output.len() != expected
        || u32_at(output, 0) != OUT_MAGIC
        || u32_at(output, 4) as usize != count
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "la-oracle wrote {} bytes, expected {expected} (header + {count} outcomes)",
                output.len()
            ),
        ));
    }
    Ok(output[OUT_HEADER..]
        .chunks_exact(OUTCOME_SIZE)
        .map(outcome)
        .collect())
}

fn outcome(rec: &[u8]) -> Outcome {
    let mut regs = [0; 32];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = u64_at(rec, 16 + 8 * i);
    }
    let mut fregs = [0; 32];
    for (i, r) in fregs.iter_mut().enumerate() {
        *r = u64_at(rec, 280 + 8 * i);
    }
    Outcome {
        signal: u32_at(rec, 0) as i32,
        pc: u64_at(rec, 8),
        regs,
        scratch_hash: u64_at(rec, 272),
        fregs,
        fcc: u32_at(rec, 536) as u8,
        fcsr: u32_at(rec, 540),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
