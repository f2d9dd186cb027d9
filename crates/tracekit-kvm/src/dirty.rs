//! The dirty-logging test (the seed's dirty_log_perf_test): populate the memory, enable dirty
//! logging on the test slot, then per iteration let every vCPU dirty its pages and collect the
//! dirty bitmap (KVM_GET_DIRTY_LOG, then KVM_CLEAR_DIRTY_LOG with manual protection), checking
//! the bitmap is exactly the pages written.

use crate::access::{AccessPattern, replay};
use crate::error::{Error, Result};
use crate::host::HostToucher;
use crate::layout::{Layout, Verification};
use crate::memory::Backing;
use crate::options::{CommonOptions, Engine};
use crate::runner::Toucher;
use crate::vm::PerfTestVm;
use serde::Serialize;
use std::time::Instant;
use tracekit_core::process::Progress;
use tracekit_core::stats::{SampleSummary, Samples};

/// The iteration number is stored in the top 16 bits of every value the guest writes.
pub const MAX_ITERATIONS: u64 = 0xffff;

/// Parameters of a dirty-log run.
#[derive(Debug, Clone)]
pub struct DirtyLogOptions {
    /// What both tests share; with [`Engine::Host`] there is no log to collect.
    pub common: CommonOptions,
    /// Number of dirty-and-collect iterations after the populate pass.
    pub iterations: u64,
    /// Write one page in `wr_fract` during the iterations (read the others).
    pub wr_fract: u64,
    /// Use KVM_CLEAR_DIRTY_LOG (manual protection) when the kernel supports it.
    pub manual_protect: bool,
    /// Write each access's page with this probability in percent instead of by `wr_fract`
    /// (dirty_log_perf_test's `-w`; KVM only).
    pub write_percent: Option<u8>,
    /// Pick each access's page at random (dirty_log_perf_test's `-a`; KVM only).
    pub random_access: bool,
    /// Seed of the guest's random generator (dirty_log_perf_test's `-r`).
    pub seed: u32,
    /// Keep the vCPUs dirtying memory while logging is disabled at the end
    /// (dirty_log_perf_test's `-e`; KVM only): they run pass `iterations + 1` over and over
    /// until the host has disabled it.
    pub dirty_while_disabling: bool,
}

impl DirtyLogOptions {
    /// The access pattern of the dirtying iterations.
    pub fn pattern(&self) -> AccessPattern {
        AccessPattern {
            write_percent: self.write_percent,
            random: self.random_access,
            wr_fract: self.wr_fract.max(1),
        }
    }
}

/// One dirty-and-collect iteration.
#[derive(Debug, Clone, Serialize)]
pub struct IterationOutcome {
    /// Iteration number (1-based; 0 is the populate pass).
    pub iteration: u64,
    /// Seconds from the first vCPU starting to the last finishing.
    pub dirty_seconds: f64,
    /// Seconds each vCPU took.
    pub vcpu_seconds: Vec<f64>,
    /// Seconds each vCPU's pass took as the guest timed it (TSC; KVM only).
    pub guest_seconds: Option<Vec<f64>>,
    /// Seconds of KVM_GET_DIRTY_LOG (KVM only).
    pub get_log_seconds: Option<f64>,
    /// Seconds of KVM_CLEAR_DIRTY_LOG, with manual protection.
    pub clear_log_seconds: Option<f64>,
    /// Bits set in the bitmap (KVM only).
    pub dirty_pages: Option<u64>,
    /// Pages this iteration wrote, so must report dirty (replayed on the host).
    pub expected_dirty_pages: u64,
    /// Whether the bitmap was exactly the pages written (KVM only).
    pub bitmap_exact: Option<bool>,
}

/// Result of a dirty-log run.
#[derive(Debug, Clone, Serialize)]
pub struct DirtyLogOutcome {
    /// Always "dirty-log".
    pub test: &'static str,
    /// Who dirtied the memory.
    pub engine: Engine,
    /// Guest CPU mode (KVM only).
    pub guest_mode: Option<&'static str>,
    /// The memory layout.
    pub layout: Layout,
    /// Guest physical address of the test memory (KVM only).
    pub test_gpa: Option<u64>,
    /// Host backing.
    pub backing: Backing,
    /// One page in `wr_fract` written per iteration (when `pattern.write_percent` is `None`).
    pub wr_fract: u64,
    /// How each iteration chose and wrote pages.
    pub pattern: AccessPattern,
    /// Seed of the guest's random generator.
    pub seed: u32,
    /// Whether KVM_CLEAR_DIRTY_LOG (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) was used.
    pub manual_protect: bool,
    /// Memory slots the test memory was split into (KVM only); each is logged and collected
    /// on its own.
    pub memslots: Option<u32>,
    /// Seconds of the populate pass (first touch of every page, logging off).
    pub populate_seconds: f64,
    /// Seconds to enable dirty logging on the test slot (KVM only).
    pub enable_seconds: Option<f64>,
    /// Seconds to disable it at the end (KVM only).
    pub disable_seconds: Option<f64>,
    /// With [`DirtyLogOptions::dirty_while_disabling`]: the passes each vCPU completed while
    /// logging was being disabled (each at least one; their writes are verified like the rest).
    pub passes_while_disabling: Option<Vec<u64>>,
    /// Pages the first iteration writes, so must report dirty (every iteration's own count is
    /// in `iterations`; they differ only with a write percentage or random access).
    pub expected_dirty_pages: u64,
    /// Every iteration.
    pub iterations: Vec<IterationOutcome>,
    /// Dirtying seconds over the iterations.
    pub dirty_seconds: Option<SampleSummary>,
    /// KVM_GET_DIRTY_LOG seconds over the iterations.
    pub get_log_seconds: Option<SampleSummary>,
    /// KVM_CLEAR_DIRTY_LOG seconds over the iterations.
    pub clear_log_seconds: Option<SampleSummary>,
    /// True when every iteration's bitmap was exactly the pages written (KVM only).
    pub bitmap_exact: Option<bool>,
    /// True only when every page was checked after the run and held its last write.
    pub verified: bool,
    /// Details of the memory check.
    pub verification: Verification,
}

/// The memory's writers: a VM, whose dirty log is collected, or host threads.
enum Subject {
    Kvm(PerfTestVm),
    Host(HostToucher),
}

impl Subject {
    fn new(options: &DirtyLogOptions) -> Result<Self> {
        let common = &options.common;
        Ok(match common.engine {
            Engine::Kvm => Subject::Kvm(PerfTestVm::new(
                common.vcpus,
                common.bytes_per_vcpu,
                &common.vm_options(options.manual_protect),
            )?),
            Engine::Host => Subject::Host(HostToucher::new(
                common.vcpus,
                common.bytes_per_vcpu,
                common.backing,
            )?),
        })
    }

    fn toucher(&mut self) -> &mut dyn Toucher {
        match self {
            Subject::Kvm(vm) => vm,
            Subject::Host(host) => host,
        }
    }

    fn set_access(&mut self, pattern: &AccessPattern) {
        match self {
            Subject::Kvm(vm) => vm.set_access(pattern),
            Subject::Host(host) => host.set_wr_fract(pattern.wr_fract),
        }
    }

    /// Each vCPU's random generator state before the next pass (host threads draw none).
    fn random_states(&self) -> Vec<u64> {
        match self {
            Subject::Kvm(vm) => vm.random_states(),
            Subject::Host(host) => vec![0; host.layout().vcpus],
        }
    }

    /// Turns logging on or off and returns how long that took (KVM only).
    fn set_logging(&mut self, on: bool) -> Result<Option<f64>> {
        let Subject::Kvm(vm) = self else {
            return Ok(None);
        };
        set_logging_timed(vm, on).map(Some)
    }

    /// One iteration: every vCPU dirties its pages, then (KVM only) the log is collected and
    /// compared with `expected`.
    fn dirty_and_collect(
        &mut self,
        iteration: u64,
        cpus: Option<&[usize]>,
        expected: &[u64],
        tick: Progress,
    ) -> Result<IterationOutcome> {
        let expected_dirty_pages = expected.iter().map(|w| u64::from(w.count_ones())).sum();
        let times = self.toucher().run_pass(iteration, cpus, tick)?;
        let collected = match self {
            Subject::Kvm(vm) => Some(collect(vm, expected)?),
            Subject::Host(_) => None,
        };
        Ok(IterationOutcome {
            iteration,
            dirty_seconds: times.total.as_secs_f64(),
            vcpu_seconds: crate::demand::seconds(&times.per_vcpu),
            guest_seconds: times.guest.as_deref().map(crate::demand::seconds),
            get_log_seconds: collected.as_ref().map(|c| c.get_log_seconds),
            clear_log_seconds: collected.as_ref().and_then(|c| c.clear_log_seconds),
            dirty_pages: collected.as_ref().map(|c| c.dirty_pages),
            expected_dirty_pages,
            bitmap_exact: collected.as_ref().map(|c| c.bitmap_exact),
        })
    }
}

/// Disables dirty logging while every vCPU runs pass `iteration` again and again; returns the
/// passes each completed and the seconds the disabling took.
fn disable_while_dirtying(
    vm: &mut PerfTestVm,
    iteration: u64,
    cpus: Option<&[usize]>,
) -> Result<(Vec<u64>, f64)> {
    vm.run_passes_while(iteration, cpus, |vm| set_logging_timed(vm, false))
}

/// Turns logging on or off and returns the seconds that took.
fn set_logging_timed(vm: &PerfTestVm, on: bool) -> Result<f64> {
    let start = Instant::now();
    vm.set_dirty_logging(on)?;
    Ok(start.elapsed().as_secs_f64())
}

/// What collecting one iteration's dirty log found and cost.
struct Collected {
    get_log_seconds: f64,
    clear_log_seconds: Option<f64>,
    dirty_pages: u64,
    bitmap_exact: bool,
}

fn collect(vm: &PerfTestVm, expected: &[u64]) -> Result<Collected> {
    let start = Instant::now();
    let bitmap = vm.get_dirty_log()?;
    let get_log_seconds = start.elapsed().as_secs_f64();
    let dirty_pages = bitmap.iter().map(|w| u64::from(w.count_ones())).sum();
    let bitmap_exact = bitmap == expected;
    let clear_log_seconds = if vm.manual_protect() {
        let start = Instant::now();
        vm.clear_dirty_log(&bitmap)?;
        Some(start.elapsed().as_secs_f64())
    } else {
        None
    };
    Ok(Collected {
        get_log_seconds,
        clear_log_seconds,
        dirty_pages,
        bitmap_exact,
    })
}

/// Runs the dirty-log test; `tick` gets the pages visited so far over all passes
/// (`(iterations + 1) × total pages` in all).
pub fn run_dirty_log(options: &DirtyLogOptions, tick: Progress) -> Result<DirtyLogOutcome> {
    if options.iterations == 0 || options.iterations > MAX_ITERATIONS {
        return Err(Error::Invalid(format!(
            "{} iterations requested; choose between 1 and {MAX_ITERATIONS}",
            options.iterations
        )));
    }
    let common = &options.common;
    common.check()?;
    let pattern = options.pattern();
    if common.engine == Engine::Host && pattern.draws() {
        return Err(Error::Invalid(
            "a write percentage or random access needs the guest (drop --no-kvm)".into(),
        ));
    }
    if options.dirty_while_disabling {
        if common.engine == Engine::Host {
            return Err(Error::Invalid(
                "dirtying while logging is disabled (-e) needs the guest (drop --no-kvm)".into(),
            ));
        }
        if options.iterations >= MAX_ITERATIONS {
            return Err(Error::Invalid(format!(
                "-e runs one pass after the last iteration; choose at most {} iterations",
                MAX_ITERATIONS - 1
            )));
        }
    }
    let mut subject = Subject::new(options)?;
    if let Subject::Kvm(vm) = &mut subject {
        vm.seed_random(options.seed);
    }
    let layout = *subject.toucher().layout();
    let cpus = common.cpus.as_deref();
    let total = layout.total_pages();
    // memstress populates writing every page in order; with a write percentage it still draws
    // (100% of the time), which the replay follows.
    let populate_pattern = AccessPattern {
        write_percent: pattern.write_percent.map(|_| 100),
        ..AccessPattern::WRITE_ALL
    };
    subject.set_access(&populate_pattern);
    let mut expect = Expectation::new(&layout);
    expect.pass(&populate_pattern, &subject.random_states(), 0);
    let populate = subject.toucher().run_pass(0, cpus, &mut |p| tick(p))?;

    let enable_seconds = subject.set_logging(true)?;
    subject.set_access(&pattern);
    let mut iterations = Vec::new();
    for iteration in 1..=options.iterations {
        let expected = expect.pass(&pattern, &subject.random_states(), iteration);
        let pass_tick = &mut |p| tick(iteration * total + p);
        iterations.push(subject.dirty_and_collect(iteration, cpus, &expected, pass_tick)?);
    }
    // -e with host threads was refused above.
    let (disable_seconds, passes_while_disabling) = match &mut subject {
        Subject::Kvm(vm) if options.dirty_while_disabling => {
            let states = vm.random_states();
            let (passes, seconds) = disable_while_dirtying(vm, options.iterations + 1, cpus)?;
            expect.repeat(&pattern, &states, &passes, options.iterations + 1);
            (Some(seconds), Some(passes))
        }
        _ => (subject.set_logging(false)?, None),
    };

    let verification = layout.verify(
        subject.toucher().memory(),
        |vcpu, page| expect.last_write(vcpu, page),
        0,
    );
    let summary = |f: &dyn Fn(&IterationOutcome) -> Option<f64>| {
        iterations
            .iter()
            .filter_map(f)
            .collect::<Samples>()
            .summary()
    };
    let manual_protect = matches!(&subject, Subject::Kvm(vm) if vm.manual_protect());
    let memslots = match &subject {
        Subject::Kvm(vm) => Some(vm.test_slots()),
        Subject::Host(_) => None,
    };
    Ok(DirtyLogOutcome {
        test: "dirty-log",
        engine: common.engine,
        guest_mode: common.guest_mode(),
        layout,
        test_gpa: subject.toucher().test_gpa(),
        backing: common.backing,
        wr_fract: pattern.wr_fract,
        pattern,
        seed: options.seed,
        manual_protect,
        memslots,
        populate_seconds: populate.total.as_secs_f64(),
        enable_seconds,
        disable_seconds,
        passes_while_disabling,
        expected_dirty_pages: iterations.first().map_or(0, |i| i.expected_dirty_pages),
        dirty_seconds: summary(&|i| Some(i.dirty_seconds)),
        get_log_seconds: summary(&|i| i.get_log_seconds),
        clear_log_seconds: summary(&|i| i.clear_log_seconds),
        bitmap_exact: (common.engine == Engine::Kvm)
            .then(|| iterations.iter().all(|i| i.bitmap_exact == Some(true))),
        iterations,
        verified: verification.ok(total),
        verification,
    })
}

impl DirtyLogOutcome {
    /// An error saying what the run got wrong, if anything: a dirty bitmap that was not
    /// exactly the pages written, or pages that lost their last write.
    pub fn verification_error(&self) -> Option<Error> {
        if self.bitmap_exact == Some(false) {
            return Some(Error::Invalid(
                "the dirty bitmap was not exactly the pages written (see dirty_pages vs expected_dirty_pages): \
                 KVM dirty logging lost or invented pages"
                    .into(),
            ));
        }
        (!self.verified).then(|| {
            Error::Invalid(format!(
                "{} pages do not hold their last write after the run",
                self.verification.mismatches
            ))
        })
    }
}

/// What the guest's passes must have done, replayed on the host: each page's last write.
struct Expectation {
    layout: Layout,
    /// Iteration of each page's last write, vCPU-major.
    last: Vec<u64>,
}

impl Expectation {
    fn new(layout: &Layout) -> Self {
        Expectation {
            layout: *layout,
            last: vec![0; layout.total_pages() as usize],
        }
    }

    /// Replays pass `iteration` of every vCPU from its generator state in `states`; returns
    /// the dirty bitmap KVM must report for it (one bit per guest page of the slot).
    fn pass(&mut self, pattern: &AccessPattern, states: &[u64], iteration: u64) -> Vec<u64> {
        let layout = self.layout;
        let mut bitmap = vec![0u64; layout.memory_pages().div_ceil(64) as usize];
        for (vcpu, state) in states.iter().enumerate() {
            self.replay_vcpu(pattern, vcpu, &mut state.clone(), iteration, |page| {
                let bit = layout.offset(vcpu, page) / layout.guest_page_size;
                bitmap[(bit / 64) as usize] |= 1 << (bit % 64);
            });
        }
        bitmap
    }

    /// Replays `passes[v]` passes of `iteration` for each vCPU `v`, one after another from its
    /// generator state in `states` (the vCPUs kept dirtying while logging was disabled).
    fn repeat(&mut self, pattern: &AccessPattern, states: &[u64], passes: &[u64], iteration: u64) {
        for (vcpu, (state, &count)) in states.iter().zip(passes).enumerate() {
            let mut state = *state;
            for _ in 0..count {
                self.replay_vcpu(pattern, vcpu, &mut state, iteration, |_| {});
            }
        }
    }

    /// Replays one pass of `vcpu` from generator state `state`, recording each write as the
    /// page's last and telling `written` its page.
    fn replay_vcpu(
        &mut self,
        pattern: &AccessPattern,
        vcpu: usize,
        state: &mut u64,
        iteration: u64,
        mut written: impl FnMut(u64),
    ) {
        let pages = self.layout.pages_per_vcpu;
        replay(pattern, pages, state, |page, write| {
            if write {
                written(page);
                self.last[(vcpu as u64 * pages + page) as usize] = iteration;
            }
        });
    }

    /// The iteration whose value page `page` of `vcpu` must hold: its own last write, or with
    /// overlapping vCPUs the latest of any vCPU's (all write the same value in one iteration).
    fn last_write(&self, vcpu: usize, page: u64) -> u64 {
        let at = |v: usize| self.last[(v as u64 * self.layout.pages_per_vcpu + page) as usize];
        if self.layout.overlap {
            (0..self.layout.vcpus).map(at).max().unwrap_or(0)
        } else {
            at(vcpu)
        }
    }
}

/// The bitmap KVM must report after an iteration: page `j` of each vCPU when `j % wr_fract == 0`.
pub fn expected_bitmap(layout: &Layout, wr_fract: u64) -> Vec<u64> {
    let pattern = AccessPattern {
        wr_fract,
        ..AccessPattern::WRITE_ALL
    };
    Expectation::new(layout).pass(&pattern, &vec![0; layout.vcpus], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmOptions;

    /// Many passes while the host waits 30 ms before disabling (random pages, 1% written, so
    /// that each pass still writes pages no earlier one did): the replay of each vCPU's passes
    /// predicts every page, and one pass fewer would not.
    #[test]
    fn passes_while_disabling_are_replayed_exactly() {
        let mut vm = PerfTestVm::new(2, 16 << 20, &VmOptions::new(Backing::Anonymous)).unwrap();
        let layout = *vm.layout();
        vm.seed_random(3);
        let populate = AccessPattern {
            write_percent: Some(100),
            ..AccessPattern::WRITE_ALL
        };
        let mut expect = Expectation::new(&layout);
        vm.set_access(&populate);
        expect.pass(&populate, &vm.random_states(), 0);
        vm.run_pass(0, None, &mut |_| {}).unwrap();
        let pattern = AccessPattern {
            write_percent: Some(1),
            random: true,
            wr_fract: 1,
        };
        vm.set_access(&pattern);
        vm.set_dirty_logging(true).unwrap();
        let states = vm.random_states();
        let (passes, ()) = vm
            .run_passes_while(1, None, |vm| {
                std::thread::sleep(std::time::Duration::from_millis(30));
                vm.set_dirty_logging(false)
            })
            .unwrap();
        assert!(passes.iter().all(|&p| p >= 2), "{passes:?}");
        let mut short = Expectation {
            layout,
            last: expect.last.clone(),
        };
        expect.repeat(&pattern, &states, &passes, 1);
        let check = |e: &Expectation| {
            layout
                .verify(vm.memory(), |v, p| e.last_write(v, p), 0)
                .ok(layout.total_pages())
        };
        assert!(check(&expect), "{passes:?}");
        let fewer: Vec<u64> = passes.iter().map(|p| p - 1).collect();
        short.repeat(&pattern, &states, &fewer, 1);
        if short.last != expect.last {
            assert!(!check(&short), "one pass fewer verified too");
        }
    }

    #[test]
    fn expected_bitmap_marks_every_wr_fract_page_of_each_vcpu() {
        let layout = Layout::new(2, 70 * 4096, Backing::Anonymous, 8).unwrap();
        let bitmap = expected_bitmap(&layout, 4);
        // vCPU 0: pages 0,4,...,68 (bits 0..68); vCPU 1: pages 70+0, 70+4, ..., 70+68.
        let set: Vec<u64> = (0..140)
            .filter(|b| bitmap[(b / 64) as usize] >> (b % 64) & 1 == 1)
            .collect();
        let want: Vec<u64> = (0..70)
            .step_by(4)
            .chain((0..70).step_by(4).map(|p| 70 + p))
            .collect();
        assert_eq!(set, want);
        assert_eq!(bitmap.len(), 3);
    }
}
