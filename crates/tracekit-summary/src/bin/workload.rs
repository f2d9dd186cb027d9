//! A workload whose system calls are known exactly, for tests and benchmarks of
//! `trace summary`. Each step makes exactly the calls it names, with raw syscalls so that
//! libc cannot add or cache any.
//!
//! usage: tracekit-syscall-workload STEP...   (or just N: the same as `getppid N`)
//!   getppid N          N getppid calls
//!   ebadf N            N close(-1) calls, each failing with EBADF
//!   enoent N           N openat of a missing file, each failing with ENOENT
//!   badnr N            N calls of syscall number 5000 (none), each failing with ENOSYS
//!   sleep NS...        one nanosleep of each length (ns)
//!   sleeplog PATH      write each later nanosleep's duration as measured here (ns, one per
//!                      line) to PATH, for comparison with the kernel-side measurement
//!   threads T N        T threads, each making N getppid calls
//!   fork C N           C child processes, each making N getppid calls
//!   storm SECS T R K   for SECS seconds: T threads calling tk_storm_call() (one getppid
//!                      each) as fast as they can, while R times a second a child is forked
//!                      that execs this program to make K getppid calls and exit; then prints
//!                      `storm calls X children C child_calls Y` (X: the threads' calls)
//!   wait               block until a line arrives on stdin
//!   exit CODE          exit with CODE now
//!   timefile PATH      when the steps are done, write their wall time in ns to PATH
//!                      (used by the benchmark, so that tool start-up is not counted)

use std::io::BufRead;

fn getppid(n: u64) {
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

/// One getppid, in a function of its own so that probes can count the calls.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tk_storm_call() {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

/// `storm SECS T R K`: threads, short-lived processes and exec churn at once, with every
/// call counted here so that a tracer's counts can be checked exactly.
fn storm(secs: u64, threads: u64, rate: u64, calls_per_child: u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    tk_storm_call();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let children = spawn_churn(secs, rate, calls_per_child);
    done.store(true, Ordering::Relaxed);
    let calls: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    println!(
        "storm calls {calls} children {children} child_calls {}",
        children * calls_per_child
    );
}

/// Forks `rate` children a second for `secs` seconds, each exec'ing this program for
/// `getppid K`; reaps them as they end and waits for the last. Returns how many ran.
fn spawn_churn(secs: u64, rate: u64, k: u64) -> u64 {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let exe = std::env::current_exe().expect("own path");
    // Built before forking: the child only calls execv and _exit.
    let path = CString::new(exe.as_os_str().as_bytes()).expect("path");
    let argv = [
        path.clone(),
        c"getppid".into(),
        CString::new(k.to_string()).expect("k"),
    ];
    let ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let start = std::time::Instant::now();
    let period = std::time::Duration::from_secs(1) / rate.max(1) as u32;
    let mut spawned = 0u64;
    let mut running = 0u64;
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        // SAFETY: the child calls only execv and _exit (async-signal-safe) on data built above.
        match unsafe { libc::fork() } {
            // SAFETY: path and ptrs (a null-terminated array of C strings) outlive the call.
            0 => unsafe {
                libc::execv(path.as_ptr(), ptrs.as_ptr());
                libc::_exit(127)
            },
            -1 => usage("fork failed"),
            _ => {
                spawned += 1;
                running += 1;
            }
        }
        running -= reap(false);
        std::thread::sleep((period * spawned as u32).saturating_sub(start.elapsed()));
    }
    while running > 0 {
        running -= reap(true);
    }
    spawned
}

/// Reaps ended children (one, waiting for it, when `block`); returns how many.
fn reap(block: bool) -> u64 {
    let mut n = 0;
    loop {
        let mut status = 0;
        let flags = if block && n == 0 { 0 } else { libc::WNOHANG };
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid <= 0 {
            return n;
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "a storm child failed: status {status:#x}"
        );
        n += 1;
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 1 && args[0].parse::<u64>().is_ok() {
        args.insert(0, "getppid".into());
    }
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage(&format!("expected a number at argument {}", i + 1)))
    };
    let started = std::time::Instant::now();
    let mut timefile: Option<String> = None;
    let mut sleeplog: Option<String> = None;
    let mut slept: Vec<u128> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "getppid" => {
                getppid(num(i + 1));
                i += 2;
            }
            "ebadf" => {
                for _ in 0..num(i + 1) {
                    // SAFETY: closing fd -1 only returns EBADF.
                    unsafe { libc::syscall(libc::SYS_close, -1) };
                }
                i += 2;
            }
            "enoent" => {
                let path = c"/nonexistent/tracekit-workload";
                for _ in 0..num(i + 1) {
                    // SAFETY: the path is a valid C string; the call fails with ENOENT.
                    unsafe {
                        libc::syscall(
                            libc::SYS_openat,
                            libc::AT_FDCWD,
                            path.as_ptr(),
                            libc::O_RDONLY,
                        )
                    };
                }
                i += 2;
            }
            "badnr" => {
                for _ in 0..num(i + 1) {
                    // SAFETY: an unknown syscall number only returns ENOSYS.
                    unsafe { libc::syscall(5000) };
                }
                i += 2;
            }
            "sleep" => {
                i += 1;
                while let Some(ns) = args.get(i).and_then(|s| s.parse::<i64>().ok()) {
                    let ts = libc::timespec {
                        tv_sec: ns / 1_000_000_000,
                        tv_nsec: ns % 1_000_000_000,
                    };
                    let before = std::time::Instant::now();
                    // SAFETY: ts is a valid timespec; no remainder pointer.
                    unsafe {
                        libc::syscall(
                            libc::SYS_nanosleep,
                            &ts,
                            std::ptr::null_mut::<libc::timespec>(),
                        )
                    };
                    slept.push(before.elapsed().as_nanos());
                    i += 1;
                }
            }
            "threads" => {
                let (t, n) = (num(i + 1), num(i + 2));
                let handles: Vec<_> = (0..t)
                    .map(|_| std::thread::spawn(move || getppid(n)))
                    .collect();
                handles
                    .into_iter()
                    .for_each(|h| h.join().expect("worker thread"));
                i += 3;
            }
            "fork" => {
                let (c, n) = (num(i + 1), num(i + 2));
                for _ in 0..c {
                    // SAFETY: the child only makes raw syscalls and exits without unwinding.
                    match unsafe { libc::fork() } {
                        0 => {
                            getppid(n);
                            // SAFETY: _exit ends the child at once; nothing is left to unwind.
                            unsafe { libc::_exit(0) };
                        }
                        -1 => usage("fork failed"),
                        _ => {}
                    }
                }
                for _ in 0..c {
                    let mut status = 0;
                    // SAFETY: waits for any child; status is a valid out-pointer.
                    unsafe { libc::wait(&mut status) };
                }
                i += 3;
            }
            "storm" => {
                storm(num(i + 1), num(i + 2), num(i + 3), num(i + 4));
                i += 5;
            }
            "wait" => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .expect("read stdin");
                i += 1;
            }
            "sleeplog" => {
                sleeplog = args.get(i + 1).cloned();
                i += 2;
            }
            "timefile" => {
                timefile = args.get(i + 1).cloned();
                i += 2;
            }
            "exit" => std::process::exit(num(i + 1) as i32),
            other => usage(&format!("unknown step '{other}'")),
        }
    }
    if let Some(path) = sleeplog {
        let lines: String = slept.iter().map(|ns| format!("{ns}\n")).collect();
        std::fs::write(&path, lines).expect("write sleeplog");
    }
    if let Some(path) = timefile {
        std::fs::write(&path, started.elapsed().as_nanos().to_string()).expect("write timefile");
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "tracekit-syscall-workload: {msg}\nusage: tracekit-syscall-workload [getppid N | ebadf N | enoent N | badnr N | sleep NS... | sleeplog PATH | threads T N | fork C N | storm SECS T R K | wait | exit CODE | timefile PATH]..."
    );
    std::process::exit(2)
}
