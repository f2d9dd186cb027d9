//! Attaches the empty `tp_btf` sys_enter/sys_exit pair (the cost floor of any in-kernel
//! syscall tracer), runs the command given as arguments, and detaches. Used by
//! bench/trace-summary.py: `cargo run --release --example floor -- CMD ARGS...`.

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("usage: floor COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let _floor = tracekit_summary::attach_floor().unwrap_or_else(|e| {
        eprintln!("floor: {e}");
        std::process::exit(1)
    });
    let status = std::process::Command::new(program).args(args).status().expect("run command");
    std::process::exit(status.code().unwrap_or(1));
}
