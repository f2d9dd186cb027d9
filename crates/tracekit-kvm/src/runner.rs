//! Running one pass of all vCPUs (or host threads) at once and timing each: the seed's
//! start_vcpu_threads/join_vcpu_threads, with a start barrier so thread creation (which takes
//! mmap_lock for writing) does not disturb the first faults.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::memory::HostMemory;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracekit_core::process::Progress;

/// How often the progress callback runs while a pass is under way.
const TICK: Duration = Duration::from_millis(100);

/// Wall-clock times of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PassTimes {
    /// Time each vCPU took from the common start to touching its last page.
    pub per_vcpu: Vec<Duration>,
    /// From the first vCPU starting to the last one finishing.
    pub total: Duration,
    /// Each vCPU's pass as the guest timed it (its TSC from the pass's first instruction to
    /// its last page touched); `None` without a guest.
    pub guest: Option<Vec<Duration>>,
}

/// Something that touches a [`Layout`]'s pages from N threads: the KVM guest
/// ([`PerfTestVm`](crate::PerfTestVm)) or the host-only floor ([`HostToucher`](crate::HostToucher)).
pub trait Toucher {
    /// The test memory layout.
    fn layout(&self) -> &Layout;
    /// The host mapping of the test memory (for userfaultfd registration and verification).
    fn memory(&self) -> &HostMemory;
    /// Guest physical address of the test memory, for a guest.
    fn test_gpa(&self) -> Option<u64> {
        None
    }
    /// Runs one pass: every vCPU visits all of its pages once, writing
    /// [`page_value`](crate::page_value)`(gva, iteration)`. With `cpus`, vCPU `i` runs pinned
    /// to `cpus[i]`. `tick` gets the number of pages visited so far, every 100 ms.
    fn run_pass(
        &mut self,
        iteration: u64,
        cpus: Option<&[usize]>,
        tick: Progress,
    ) -> Result<PassTimes>;
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|errno| Error::Pin { cpu, errno })?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|errno| Error::Pin { cpu, errno })
}

/// Checks that a CPU list has one CPU per vCPU.
pub fn check_cpus(cpus: Option<&[usize]>, vcpus: usize) -> Result<()> {
    match cpus {
        Some(c) if c.len() != vcpus => Err(Error::CpuListLength {
            given: c.len(),
            vcpus,
        }),
        _ => Ok(()),
    }
}

/// Runs each job on its own thread (pinned when `cpus` is given), all released together,
/// calling `tick(progress())` every 100 ms until they are done.
pub(crate) fn run_threads<F>(
    jobs: Vec<F>,
    cpus: Option<&[usize]>,
    progress: &(dyn Fn() -> u64 + Sync),
    tick: Progress,
) -> Result<PassTimes>
where
    F: FnOnce() -> Result<()> + Send,
{
    run_threads_with(jobs, cpus, progress, tick, || Ok(())).map(|(times, ())| times)
}

/// [`run_threads`], with `host` run on the calling thread once every thread has begun its job
/// (or failed before it, e.g. to pin itself) and before waiting for them: the host's side of a
/// test that acts while the vCPUs run. `host` must make the jobs end (they are joined after it
/// returns, even when it fails).
pub(crate) fn run_threads_with<F, R>(
    jobs: Vec<F>,
    cpus: Option<&[usize]>,
    progress: &(dyn Fn() -> u64 + Sync),
    tick: Progress,
    host: impl FnOnce() -> Result<R>,
) -> Result<(PassTimes, R)>
where
    F: FnOnce() -> Result<()> + Send,
{
    check_cpus(cpus, jobs.len())?;
    // The gate holds every thread until all are created; its value says "abort" when
    // creating one of them failed.
    let gate = RwLock::new(false);
    // Threads past the gate: about to run their job, or failed before it.
    let entered = AtomicUsize::new(0);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (results, hosted): (Vec<Result<(Instant, Instant)>>, _) = std::thread::scope(|scope| {
        let mut closed = gate.write().unwrap_or_else(|e| e.into_inner());
        let mut handles = Vec::with_capacity(jobs.len());
        let mut spawn_error = None;
        for (i, job) in jobs.into_iter().enumerate() {
            let (gate, entered, done_tx) = (&gate, &entered, done_tx.clone());
            let cpu = cpus.map(|c| c[i]);
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn_scoped(scope, move || {
                    let pinned = cpu.map_or(Ok(()), pin_current_thread);
                    let abort = *gate.read().unwrap_or_else(|e| e.into_inner());
                    let start = Instant::now();
                    entered.fetch_add(1, Ordering::SeqCst);
                    let result = match pinned {
                        Ok(()) if abort => {
                            Err(Error::Invalid("another vCPU thread could not start".into()))
                        }
                        Ok(()) => job().map(|()| (start, Instant::now())),
                        Err(e) => Err(e),
                    };
                    let _ = done_tx.send(());
                    result
                });
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(Error::Thread(e));
                    break;
                }
            }
        }
        *closed = spawn_error.is_some();
        drop(closed);
        drop(done_tx);
        let hosted = match spawn_error {
            None => {
                while entered.load(Ordering::SeqCst) < handles.len() {
                    std::thread::yield_now();
                }
                host()
            }
            Some(_) => Err(Error::Invalid("the vCPU threads did not start".into())),
        };
        let mut finished = 0;
        while finished < handles.len() {
            match done_rx.recv_timeout(TICK) {
                Ok(()) => finished += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => tick(progress()),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        tick(progress());
        let joined = handles.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Invalid("a vCPU thread panicked".into())))
        });
        (
            spawn_error.map(Err).into_iter().chain(joined).collect(),
            hosted,
        )
    });
    let spans = results.into_iter().collect::<Result<Vec<_>>>()?;
    let hosted = hosted?;
    let first = spans.iter().map(|s| s.0).min().expect("at least one vCPU");
    let last = spans.iter().map(|s| s.1).max().expect("at least one vCPU");
    let times = PassTimes {
        per_vcpu: spans.iter().map(|(s, e)| *e - *s).collect(),
        total: last - first,
        guest: None,
    };
    Ok((times, hosted))
}
