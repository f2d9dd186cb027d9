//! The runner finds what it must: a panicking input is caught, counted once per place, saved
//! with its bytes, and the run goes on; a slow input is reported; the same seed tries the same
//! inputs.

use std::time::Duration;
use tracekit_fuzz::Target;
use tracekit_fuzz::run::{self, Options};

fn options(dir: &std::path::Path, seed: u64) -> Options {
    Options {
        seed,
        time: Duration::from_secs(30),
        max_inputs: 2000,
        crash_dir: dir.to_path_buf(),
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tracekit-fuzz-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Panics on any input holding a zero byte: mutations make one quickly from the seed.
fn panics_on_zero(input: &[u8]) {
    assert!(!input.contains(&0), "a zero byte");
}

fn target(run: fn(&[u8]), limit: Duration) -> Target {
    Target {
        name: "test",
        about: "a test target",
        seeds: || vec![b"abcdefgh".to_vec()],
        dictionary: &[],
        max_len: 64,
        limit,
        run,
    }
}

#[test]
fn a_panic_is_caught_counted_by_place_and_saved() {
    let dir = temp("panic");
    let outcome = run::run(
        &target(panics_on_zero, Duration::from_secs(1)),
        &options(&dir, 1),
    );
    assert_eq!(outcome.tried, 2000, "the run goes on after a panic");
    assert_eq!(outcome.panics.len(), 1, "{:?}", outcome.panics);
    let panic = &outcome.panics[0];
    assert!(panic.inputs > 1);
    assert!(
        panic.what.contains("runner.rs") && panic.what.ends_with("a zero byte"),
        "{}",
        panic.what
    );
    assert!(std::fs::read(&panic.saved).unwrap().contains(&0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_slow_input_is_reported_and_the_same_seed_replays_the_same_inputs() {
    // Only the seed itself (and a mutation that leaves it whole) is slow: it spins until its
    // thread has used 30 ms of CPU, over the 10 ms limit however loaded the machine is, and
    // far under the watchdog's wall-clock hang floor.
    fn slow_on_z(input: &[u8]) {
        if input == b"zzz" {
            let start = run::thread_cpu_time();
            while run::thread_cpu_time() - start < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
        }
    }
    let dir = temp("slow");
    let mut t = target(slow_on_z, Duration::from_millis(10));
    t.seeds = || vec![b"abc".to_vec(), b"zzz".to_vec()];
    let few = Options {
        max_inputs: 200,
        ..options(&dir, 9)
    };
    let first = run::run(&t, &few);
    assert!(!first.slow.is_empty());
    assert!(
        first
            .slow
            .iter()
            .all(|(_, took)| *took >= Duration::from_millis(10))
    );
    let again = run::run(&t, &few);
    let saved = |o: &run::Outcome| o.slow.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(saved(&first), saved(&again));
    std::fs::remove_dir_all(dir).unwrap();
}
