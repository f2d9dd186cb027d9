//! Attaches the empty `tp_btf` sys_enter/sys_exit pair (the cost floor of any in-kernel
//! syscall tracer), runs the command given as arguments, and detaches. Used by
//! bench/trace-summary.py: `cargo run --release --example floor -- [--clock] CMD ARGS...`.
//! With `--clock` each program also reads the clock: the floor of a latency-measuring tracer.

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let clock = argv.first().is_some_and(|a| a == "--clock");
    if clock {
        argv.remove(0);
    }
    let Some((program, args)) = argv.split_first() else {
        eprintln!("usage: floor [--clock] COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let _floor = tracekit_summary::attach_floor(clock).unwrap_or_else(|e| {
        eprintln!("floor: {e}");
        std::process::exit(1)
    });
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .expect("run command");
    std::process::exit(status.code().unwrap_or(1));
}
