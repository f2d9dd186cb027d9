//! The runner: feeds a target its seeds, then mutated seeds, each under `catch_unwind`, and
//! keeps the inputs that panicked or ran too long.

use crate::Target;
use crate::mutate::{self, Context, Rng};
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one run of a target goes on.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run's seed: with the same seed the same inputs are tried, in the same order.
    pub seed: u64,
    /// Stop after this long...
    pub time: Duration,
    /// ...or after this many inputs, whichever comes first.
    pub max_inputs: u64,
    /// Where inputs that panicked or ran too long are saved (in a folder per target).
    pub crash_dir: PathBuf,
}

/// A distinct panic: one place in the code, however many inputs reached it.
#[derive(Debug, Clone)]
pub struct Panic {
    /// `file:line:column: message` of the panic.
    pub what: String,
    /// How many inputs panicked there.
    pub inputs: u64,
    /// The first such input, saved.
    pub saved: PathBuf,
}

/// What one run of a target found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Inputs tried (the seeds included).
    pub tried: u64,
    /// The distinct panics, by place.
    pub panics: Vec<Panic>,
    /// Inputs that took longer than the target's limit (in CPU time of the thread that runs
    /// them), saved, with how long they took.
    pub slow: Vec<(PathBuf, Duration)>,
    /// The most CPU time any one input took.
    pub slowest: Duration,
    /// How long the run took.
    pub elapsed: Duration,
}

/// The message of the last panic, set by the silent hook [`run`] installs: a global rather
/// than a thread-local because a target's helper thread (the fake gdb stub) may be the one
/// that panics.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Runs `target` as `options` says and reports what it found. A panic hook that records the
/// panic instead of printing it is in place while it runs.
pub fn run(target: &Target, options: &Options) -> Outcome {
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "target {} has no seeds", target.name);
    let cx = Context {
        seeds: &seeds,
        dictionary: target.dictionary,
        max_len: target.max_len,
    };
    let watchdog = Watchdog::start(target, options);
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{at}: {}", payload_text(info.payload())));
    }));
    let aborts = crate::abort::Guard::arm(&options.crash_dir, target.name);
    let outcome = run_inputs(target, options, &cx, &watchdog, aborts.as_ref());
    drop(aborts);
    panic::set_hook(previous_hook);
    watchdog.stop();
    outcome
}

fn run_inputs(
    target: &Target,
    options: &Options,
    cx: &Context<'_>,
    watchdog: &Watchdog,
    aborts: Option<&crate::abort::Guard>,
) -> Outcome {
    let start = Instant::now();
    let mut outcome = Outcome::default();
    let mut panics: BTreeMap<String, Panic> = BTreeMap::new();
    while outcome.tried < options.max_inputs && start.elapsed() < options.time {
        let index = outcome.tried;
        let input = match cx.seeds.get(index as usize) {
            Some(seed) => seed.clone(),
            None => mutate::mutate(&mut Rng::for_input(options.seed, index), cx),
        };
        watchdog.begin(&input);
        aborts.inspect(|a| a.set(&input));
        let cpu = thread_cpu_time();
        let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = thread_cpu_time().saturating_sub(cpu);
        aborts.inspect(|a| a.clear());
        watchdog.end();
        outcome.tried += 1;
        outcome.slowest = outcome.slowest.max(took);
        if result.is_err() {
            let what = LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "a panic without a message".into());
            record_panic(&mut panics, what, target, options, &input);
        }
        if took > target.limit {
            let saved = save(&options.crash_dir, target.name, "slow-", &input);
            outcome.slow.push((saved, took));
        }
    }
    outcome.panics = panics.into_values().collect();
    outcome.elapsed = start.elapsed();
    outcome
}

/// The CPU time this thread has used. Inputs are timed by it, not by the clock on the wall: on
/// a loaded machine (CI, other builds) a one-byte input waited for the CPU for over a second.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer, which is valid and ours.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn record_panic(
    panics: &mut BTreeMap<String, Panic>,
    what: String,
    target: &Target,
    options: &Options,
    input: &[u8],
) {
    // The place (before the message) identifies the bug: messages carry input values.
    let place = what.split(": ").next().unwrap_or_default().to_owned();
    panics
        .entry(place)
        .or_insert_with(|| Panic {
            what,
            inputs: 0,
            saved: save(&options.crash_dir, target.name, "", input),
        })
        .inputs += 1;
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "no message".into())
}

/// Saves `input` as `DIR/TARGET/PREFIX<hash>.bin` (the hash of its bytes, so a rerun that finds
/// the same input does not pile up copies) and returns the path.
pub fn save(dir: &Path, target: &str, prefix: &str, input: &[u8]) -> PathBuf {
    let dir = dir.join(target);
    let path = dir.join(format!("{prefix}{:016x}.bin", fnv1a(input)));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("tracekit-fuzz: cannot save {}: {e}", path.display());
    }
    path
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The least time by the clock an input may run before it is taken to hang. The hang limit is
/// on the wall clock (a hang may sleep, using no CPU), so it is generous: ten times the
/// target's CPU-time limit and never under this. An input that is only slow must not end the
/// run because a loaded machine kept it waiting for the CPU.
pub const HANG_FLOOR: Duration = Duration::from_secs(10);

/// The input running and since when, if one is.
type Running = Arc<Mutex<Option<(Instant, Vec<u8>)>>>;

/// Catches an input that hangs its target: a parser that loops forever on damaged input can
/// not be interrupted in-process, so a thread watches the clock, saves the input that has run
/// longer than the target's hang limit (see [`HANG_FLOOR`]), and ends the process with
/// status 3.
struct Watchdog {
    current: Running,
    done: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(target: &Target, options: &Options) -> Watchdog {
        let current: Running = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (watched, finished) = (current.clone(), done.clone());
        let (name, hang, dir) = (
            target.name,
            (target.limit * 10).max(HANG_FLOOR),
            options.crash_dir.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let guard = watched.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((since, input)) = guard.as_ref()
                    && since.elapsed() > hang
                {
                    let saved = save(&dir, name, "hang-", input);
                    eprintln!(
                        "tracekit-fuzz: {name}: an input has run for {:?} (hung?); saved as {}",
                        since.elapsed(),
                        saved.display()
                    );
                    std::process::exit(3);
                }
            }
        });
        Watchdog {
            current,
            done,
            thread: Some(thread),
        }
    }

    fn begin(&self, input: &[u8]) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), input.to_vec()));
    }

    fn end(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn stop(mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
