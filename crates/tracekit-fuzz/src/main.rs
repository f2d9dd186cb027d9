//! `tracekit-fuzz [TARGET...] [--time SECS] [--seed N] [--inputs N] [--list]`: runs fuzz
//! targets (all by default) and prints, per target, the inputs tried and the panics found.
//! Exit status: 0 when nothing panicked or ran too long, 1 otherwise, 2 on a usage error,
//! 3 when an input hung (the watchdog saved it).

use std::process::ExitCode;
use std::time::Duration;
use tracekit_fuzz::run::{self, Options, Outcome};
use tracekit_fuzz::{Target, targets, workspace};

const USAGE: &str = "\
usage: tracekit-fuzz [TARGET...] [--time SECS] [--seed N] [--inputs N] [--list]
       tracekit-fuzz TARGET --replay FILE

  TARGET       run only these targets (default: all; --list shows them)
  --time SECS  time per target (default 10)
  --seed N     the run's seed: the same seed tries the same inputs (default 1)
  --inputs N   stop a target after N inputs (default: no limit)
  --list       list the targets and what each feeds
  --replay F   run file F through TARGET once, a panic printed as usual

Inputs that panic are saved under fuzz/crashes/TARGET/.";

struct Args {
    names: Vec<String>,
    options: Options,
    list: bool,
    replay: Option<String>,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tracekit-fuzz: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let all = targets::all();
    if args.list {
        for t in &all {
            println!("{:<14} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let chosen = match choose(&all, &args.names) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tracekit-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &args.replay {
        return replay(&chosen, file);
    }
    let failed = run_all(&chosen, &args.options);
    tracekit_fuzz::clean_scratch();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one saved input through one target, without catching anything: to debug a find.
fn replay(chosen: &[&Target], file: &str) -> ExitCode {
    let [target] = chosen else {
        eprintln!("tracekit-fuzz: --replay takes exactly one TARGET");
        return ExitCode::from(2);
    };
    match std::fs::read(file) {
        Ok(input) => {
            (target.run)(&input);
            tracekit_fuzz::clean_scratch();
            println!("{}: {file}: no panic", target.name);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tracekit-fuzz: {file}: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut out = Args {
        names: Vec::new(),
        options: Options {
            seed: 1,
            time: Duration::from_secs(10),
            max_inputs: u64::MAX,
            crash_dir: workspace().join("fuzz/crashes"),
        },
        list: false,
        replay: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--time" => out.options.time = Duration::from_secs(value("--time")?),
            "--seed" => out.options.seed = value("--seed")?,
            "--inputs" => out.options.max_inputs = value("--inputs")?,
            "--list" => out.list = true,
            "--replay" => out.replay = Some(it.next().ok_or("--replay takes a file")?),
            "-h" | "--help" => return Err("help".into()),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            name => out.names.push(name.to_owned()),
        }
    }
    Ok(out)
}

fn choose<'a>(all: &'a [Target], names: &[String]) -> Result<Vec<&'a Target>, String> {
    if names.is_empty() {
        return Ok(all.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|t| t.name == n).ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|t| t.name).collect();
                format!("no target `{n}`; the targets are: {}", known.join(", "))
            })
        })
        .collect()
}

/// Runs each target, printing its row as it finishes and the details of what it found; true
/// when any input panicked or ran too long.
fn run_all(chosen: &[&Target], options: &Options) -> bool {
    println!(
        "seed {}, up to {} s per target\n{:<14} {:>10} {:>8} {:>6} {:>10}",
        options.seed,
        options.time.as_secs(),
        "target",
        "inputs",
        "panics",
        "slow",
        "slowest"
    );
    let mut failed = false;
    let mut total = 0;
    for target in chosen {
        let outcome = run::run(target, options);
        print_row(target, &outcome);
        total += outcome.tried;
        failed |= !outcome.panics.is_empty() || !outcome.slow.is_empty();
    }
    println!("{:<14} {:>10}", "total", total);
    failed
}

fn print_row(target: &Target, o: &Outcome) {
    println!(
        "{:<14} {:>10} {:>8} {:>6} {:>8.1}ms",
        target.name,
        o.tried,
        o.panics.len(),
        o.slow.len(),
        o.slowest.as_secs_f64() * 1e3
    );
    for p in &o.panics {
        println!(
            "  panic ({} inputs): {}\n    saved: {}",
            p.inputs,
            p.what,
            p.saved.display()
        );
    }
    for (path, took) in o.slow.iter().take(5) {
        println!("  slow ({took:?}): {}", path.display());
    }
}
