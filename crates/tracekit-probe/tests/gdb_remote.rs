//! The gdb remote client against QEMU's real user-mode stub: `testdata/loongarch/hello.c`
//! waits under `qemu-loongarch64-static -g PORT`, [`GdbRemote`] drives it. Each test also pins
//! down one of the stub facts the client's module documentation states.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use object::{Object, ObjectSection, ObjectSymbol};
use tracekit_probe::breakpoint::arch::Arch;
use tracekit_probe::breakpoint::arch::loongarch64::{LoongArch64, Regs, SYSCALL_WORD, break_word};
use tracekit_probe::breakpoint::transport::gdb::remote::{GdbRemote, InterruptBy, StopReply};
use tracekit_probe::breakpoint::transport::{Memory, Registers};
use tracekit_probe::test_support::qemu::Qemu;

const BREAK_0: u32 = break_word(0);
/// `jirl $zero, $ra, 0`
const RET: u32 = 0x4c00_0020;
/// `ori $a0, $zero, n`
const fn ori_a0(n: u32) -> u32 {
    0x0380_0004 | (n << 10)
}
/// getpid in the generic system call table (the engine needs no getpid, so the arch has none).
const NR_GETPID: u64 = 172;
const A0: usize = 4;
const A7: usize = 11;
const RA: usize = 1;
const SP: usize = 3;
const SIGINT: u8 = 2;
const SIGTRAP: u8 = 5;

fn program() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(tracekit_probe::test_support::qemu::hello)
}

/// What the tests need from the program's ELF file.
struct Elf {
    entry: u64,
    text_addr: u64,
    text: Vec<u8>,
    symbols: HashMap<String, u64>,
}

impl Elf {
    fn load() -> &'static Elf {
        static ELF: OnceLock<Elf> = OnceLock::new();
        ELF.get_or_init(|| {
            let data = std::fs::read(program()).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let text = file.section_by_name(".text").unwrap();
            Elf {
                entry: file.entry(),
                text_addr: text.address(),
                text: text.data().unwrap().to_vec(),
                symbols: file
                    .symbols()
                    .filter_map(|s| Some((s.name().ok()?.to_string(), s.address())))
                    .collect(),
            }
        })
    }

    fn sym(&self, name: &str) -> u64 {
        self.symbols[name]
    }

    fn word(&self, addr: u64) -> u32 {
        let i = (addr - self.text_addr) as usize;
        u32::from_le_bytes(self.text[i..i + 4].try_into().unwrap())
    }

    /// Addresses of every instruction equal to `word`.
    fn find(&self, word: u32) -> Vec<u64> {
        (0..self.text.len() as u64 / 4)
            .map(|i| self.text_addr + 4 * i)
            .filter(|&a| self.word(a) == word)
            .collect()
    }

    /// A `syscall 0` followed by `ret` (in `sys_write`, inlined into `put`).
    fn syscall_then_ret(&self) -> u64 {
        *self
            .find(SYSCALL_WORD)
            .iter()
            .find(|&&a| self.word(a + 4) == RET)
            .expect("hello.c has a `syscall 0; ret`")
    }
}

fn start(args: &[&str]) -> Qemu {
    Qemu::start(program(), args)
}

fn trap(q: &Qemu) -> StopReply {
    StopReply::Signal {
        signal: SIGTRAP,
        thread: Some(q.pid()),
    }
}

/// Runs system call `nr` from the `syscall 0` at `at` (stopping on a `Z0` after it), puts the
/// registers back, and returns the call's result.
fn inject(r: &mut GdbRemote<LoongArch64>, at: u64, nr: u64, args: [u64; 6]) -> u64 {
    let saved = r.get_regs(0).unwrap();
    let mut regs = saved;
    regs.pc = at;
    regs.gpr[A7] = nr;
    regs.gpr[A0..A0 + 6].copy_from_slice(&args);
    r.set_regs(0, &regs).unwrap();
    r.insert_breakpoint(at + 4).unwrap();
    assert!(matches!(
        r.resume(None).unwrap(),
        StopReply::Signal {
            signal: SIGTRAP,
            ..
        }
    ));
    r.remove_breakpoint(at + 4).unwrap();
    let after = r.get_regs(0).unwrap();
    assert_eq!(after.pc, at + 4, "stopped right after the syscall");
    r.set_regs(0, &saved).unwrap();
    after.gpr[A0]
}

fn mmap_rwx(r: &mut GdbRemote<LoongArch64>, elf: &Elf) -> u64 {
    let at = elf.find(SYSCALL_WORD)[0];
    let page = inject(
        r,
        at,
        LoongArch64::NR_MMAP,
        [0, 0x4000, 7, 0x22, u64::MAX, 0],
    );
    assert_eq!(page % 0x4000, 0, "mmap returned a page: 0x{page:x}");
    assert!(page < u64::MAX - 4095, "mmap failed: {}", page as i64);
    page
}

fn code(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn connects_and_stops_at_the_entry() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    assert_eq!(r.stop_reason().unwrap(), trap(&q), "thread id = QEMU's pid");
    let regs = r.get_regs(0).unwrap();
    assert_eq!(regs.pc, elf.entry);
    assert_eq!(regs.gpr[0], 0);
    assert_ne!(regs.gpr[SP], 0);
    assert_eq!(regs.gpr[A0], 0);
    assert_eq!(
        r.section_offsets().unwrap(),
        Some(0),
        "static non-PIE: Text=0"
    );
    assert!(
        r.target_xml()
            .unwrap()
            .contains("<architecture>loongarch64</architecture>")
    );
    r.kill().unwrap();
    assert_eq!(
        q.finish(),
        (String::new(), Some(0), None),
        "QEMU exits 0 after `k`"
    );
}

#[test]
fn memory_matches_the_elf_and_the_text_is_not_writable() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    let mut at_entry = [0u8; 64];
    r.read(elf.entry, &mut at_entry).unwrap();
    let off = (elf.entry - elf.text_addr) as usize;
    assert_eq!(at_entry[..], elf.text[off..off + 64]);

    // 4 KiB: three `m` packets (2016 bytes each at most).
    let page = elf.text_addr & !0xfff;
    let mut whole = vec![0u8; 0x1000];
    r.read(page, &mut whole).unwrap();
    let start = (elf.text_addr - page) as usize;
    assert_eq!(whole[start..start + elf.text.len()], elf.text[..]);

    let err = r
        .write(elf.entry, &BREAK_0.to_le_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("at 0x{:x}", elf.entry)) && err.contains("E14"),
        "{err}"
    );
    let err = r.read(0x10, &mut [0u8; 4]).unwrap_err().to_string();
    assert!(err.contains("at 0x10") && err.contains("E14"), "{err}");
    let mut again = [0u8; 4];
    r.read(elf.entry, &mut again).unwrap();
    assert_eq!(
        again[..],
        at_entry[..4],
        "the refused write changed nothing"
    );
}

#[test]
fn breakpoint_on_work_hits_five_times_then_the_program_exits() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    let work = elf.sym("work");
    r.insert_breakpoint(work).unwrap();
    for i in 0..5 {
        // From the second on, the thread sits on the breakpoint: resume steps over it.
        assert_eq!(r.resume(None).unwrap(), trap(&q), "hit {i}");
        let regs = r.get_regs(0).unwrap();
        assert_eq!(regs.pc, work);
        assert_eq!(regs.gpr[A0], i, "work({i})");
    }
    assert_eq!(r.resume(None).unwrap(), StopReply::Exited(3));
    let err = r.stop_reason().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected, "{err}");
    assert_eq!(q.finish(), ("hello: total=10\n".into(), Some(3), None));
}

#[test]
fn injected_mmap_returns_a_page_and_the_registers_come_back() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    let saved = r.get_regs(0).unwrap();
    let page = mmap_rwx(&mut r, elf);

    // 4 KiB through three `M` packets, read back through three `m`.
    let pattern: Vec<u8> = (0..0x1000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    r.write(page, &pattern).unwrap();
    let mut back = vec![0u8; pattern.len()];
    r.read(page, &mut back).unwrap();
    assert_eq!(back, pattern);

    // The stub really has the saved registers: one step from the entry runs `move $a0, $sp`.
    assert_eq!(r.step().unwrap(), trap(&q));
    let now = r.get_regs(0).unwrap();
    let mut expected = saved;
    expected.pc = saved.pc + 4;
    expected.gpr[A0] = saved.gpr[SP];
    assert_eq!(now, expected);

    r.insert_breakpoint(elf.sym("work")).unwrap();
    assert_eq!(r.resume(None).unwrap(), trap(&q));
    assert_eq!(r.get_regs(0).unwrap().gpr[A0], 0, "first call: work(0)");
    r.remove_breakpoint(elf.sym("work")).unwrap();
    assert_eq!(r.resume(None).unwrap(), StopReply::Exited(3));
    assert_eq!(q.finish(), ("hello: total=10\n".into(), Some(3), None));
}

#[test]
fn a_fresh_page_is_writable_until_it_runs_then_after_mprotect() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    let page = mmap_rwx(&mut r, elf);
    r.write(page, &code(&[ori_a0(42), BREAK_0])).unwrap();
    let saved = r.get_regs(0).unwrap();
    let mut regs = saved;
    regs.pc = page;
    r.set_regs(0, &regs).unwrap();
    // `break 0` stops with SIGTRAP at the `break` itself, and again if continued.
    for _ in 0..2 {
        assert_eq!(r.resume(None).unwrap(), trap(&q));
        let now = r.get_regs(0).unwrap();
        assert_eq!((now.pc, now.gpr[A0]), (page + 4, 42));
    }
    r.set_regs(0, &saved).unwrap();

    let err = r.write(page, &code(&[ori_a0(43)])).unwrap_err().to_string();
    assert!(
        err.contains("E14") && err.contains(&format!("at 0x{page:x}")),
        "{err}"
    );

    let at = elf.find(SYSCALL_WORD)[0];
    assert_eq!(
        inject(
            &mut r,
            at,
            LoongArch64::NR_MPROTECT,
            [page, 0x4000, 7, 0, 0, 0]
        ),
        0
    );
    r.write(page, &code(&[ori_a0(43)])).unwrap();
    regs.pc = page;
    r.set_regs(0, &regs).unwrap();
    assert_eq!(r.resume(None).unwrap(), trap(&q));
    let now = r.get_regs(0).unwrap();
    assert_eq!(
        (now.pc, now.gpr[A0]),
        (page + 4, 43),
        "the rewritten code ran"
    );
}

#[test]
fn a_step_over_syscall_runs_it_and_the_next_instruction() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    let at = elf.syscall_then_ret();
    let mut regs = r.get_regs(0).unwrap();
    regs.pc = at;
    regs.gpr[A7] = NR_GETPID;
    regs.gpr[RA] = elf.sym("work");
    r.set_regs(0, &regs).unwrap();
    assert_eq!(r.step().unwrap(), trap(&q));
    let now = r.get_regs(0).unwrap();
    assert_eq!(now.gpr[A0], q.pid() as u64, "getpid ran (QEMU's pid)");
    assert_eq!(now.pc, elf.sym("work"), "and the `ret` after it ran too");
}

#[test]
fn fp_condition_flags_round_trip_and_reach_the_program() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    assert_eq!(r.get_regs(0).unwrap().fcc, 0, "not read unless needed");
    r.set_on_demand(true);
    let saved = r.get_regs(0).unwrap();
    assert_eq!(saved.fcc, 0);
    // Back at the entry, on a breakpoint, after `fcc_bits` returns the flags it sees in a0.
    r.insert_breakpoint(elf.entry).unwrap();
    for fcc in [0x88u8, 0x55, 0xff, 0] {
        let mut regs = saved;
        regs.fcc = fcc;
        regs.pc = elf.sym("fcc_bits");
        regs.gpr[RA] = elf.entry;
        r.set_regs(0, &regs).unwrap();
        assert_eq!(r.resume(None).unwrap(), trap(&q));
        let now = r.get_regs(0).unwrap();
        assert_eq!(now.pc, elf.entry);
        assert_eq!(now.gpr[A0], u64::from(fcc), "movcf2gr saw 0x{fcc:x}");
        assert_eq!(now.fcc, fcc, "read back through `p`");
    }
    r.set_on_demand(false);
    assert_eq!(r.get_regs(0).unwrap().fcc, 0);
}

#[test]
fn a_break_instruction_in_the_program_stops_it_at_the_break() {
    let elf = Elf::load();
    let q = start(&["break"]);
    let mut r = q.connect();
    let brk = elf.find(BREAK_0);
    assert_eq!(brk.len(), 1, "hello.c has one `break 0`");
    for _ in 0..2 {
        assert_eq!(r.resume(None).unwrap(), trap(&q));
        assert_eq!(r.get_regs(0).unwrap().pc, brk[0]);
    }
    assert_eq!(r.resume(Some(SIGTRAP)).unwrap(), StopReply::Killed(SIGTRAP));
    assert_eq!(q.finish(), ("break\n".into(), None, Some(SIGTRAP.into())));
}

#[test]
fn the_stop_flag_interrupts_a_program_that_loops_forever() {
    let elf = Elf::load();
    let mut q = start(&["loop"]);
    let mut r = q.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let setter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let reply = r.resume_until(None, &stop).unwrap();
    setter.join().unwrap();
    assert_eq!(
        reply,
        StopReply::Signal {
            signal: SIGINT,
            thread: Some(q.pid())
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let pc = r.get_regs(0).unwrap().pc;
    assert!(
        (elf.text_addr..elf.text_addr + elf.text.len() as u64).contains(&pc),
        "pc 0x{pc:x}"
    );

    // The SIGINT was QEMU's, not the program's: it runs on.
    stop.store(false, Ordering::Relaxed);
    r.insert_breakpoint(elf.sym("work")).unwrap();
    assert_eq!(r.resume_until(None, &stop).unwrap(), trap(&q));
    assert_eq!(r.get_regs(0).unwrap().pc, elf.sym("work"));
    r.detach().unwrap();
    assert!(
        q.running_after(Duration::from_millis(300)),
        "still looping after detach"
    );
}

#[test]
fn qemu_ignores_a_bare_0x03_while_the_program_runs() {
    let q = start(&["loop"]);
    let mut r = q.connect();
    r.set_interrupt_by(InterruptBy::Byte);
    let err = r.resume_until(None, &AtomicBool::new(true)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn detach_lets_the_program_finish_unprobed() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    r.insert_breakpoint(elf.sym("work")).unwrap();
    assert_eq!(r.resume(None).unwrap(), trap(&q));
    r.detach().unwrap();
    let err = r.get_regs(0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected, "{err}");
    assert_eq!(q.finish(), ("hello: total=10\n".into(), Some(3), None));
}

#[test]
fn registers_set_from_a_stop_only_move_what_changed() {
    let elf = Elf::load();
    let q = start(&[]);
    let mut r = q.connect();
    let saved: Regs = r.get_regs(0).unwrap();
    // A pc moved onto a breakpoint is reported there (no step-over: it did not stop there).
    let work = elf.sym("work");
    r.insert_breakpoint(work).unwrap();
    let mut regs = saved;
    regs.pc = work;
    regs.gpr[A0] = 7;
    regs.gpr[RA] = elf.entry;
    r.set_regs(0, &regs).unwrap();
    assert_eq!(r.resume(None).unwrap(), trap(&q));
    let now = r.get_regs(0).unwrap();
    assert_eq!((now.pc, now.gpr[A0]), (work, 7));
}
