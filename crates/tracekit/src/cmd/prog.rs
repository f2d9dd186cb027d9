//! `tracekit prog`: flags → tracekit_prog (BPF_PROG_TEST_RUN) → report.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracekit_core::report::OutputTarget;
use tracekit_prog::packet::PacketSpec;
use tracekit_prog::render::render_suites;
use tracekit_prog::vectors::{Suite, SuiteReport};
use tracekit_prog::{
    BpfObject, KernelProgram, Program, ReplayReport, RunOptions, RunReport, hex, interface_index,
    pcap, xdp_md_context,
};

/// `tracekit prog ...`
#[derive(Subcommand)]
pub enum ProgCommand {
    /// List the programs of a BPF object: name, type, ELF section, size, test-run support.
    #[command(after_help = "Example:\n  tracekit prog list bpf/obj/xdp_port_filter.bpf.o")]
    List(ListArgs),
    /// Test-run one program on a packet, a context or every packet of a capture.
    #[command(
        long_about = "Load one program of a BPF object (without attaching it) and run it in the kernel with \
BPF_PROG_TEST_RUN on the data and context you give, like `bpftool prog run`, but with the return value \
decoded for the program type (XDP_DROP, TC_ACT_SHOT, ...), the output packet as a hexdump with the \
changed bytes marked, and timing you can trust.\n\n\
Timing: one cold call first (its duration is shown apart: the first run is much slower), then \
--batches calls of --repeat runs each. The kernel reports the mean duration per run of each call; the \
table gives min, median, p99, max and stddev over the batches, in ns per run. The wall time per call \
is shown too: every call has a fixed cost the kernel's figure leaves out (for XDP with repeat > 1 \
about 16 ms here), so do not time single calls from outside.\n\n\
Input: --data-hex, --data-in FILE (raw bytes) or --packet FIELDS for the packet; --ctx-in FILE or \
--ctx-hex for the context (struct __sk_buff, xdp_md, raw_tp arguments, a syscall program's buffer). \
--pcap FILE runs the program once per packet of a capture and counts the verdicts.",
        after_help = "Examples:\n  \
tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --packet 'proto=\"udp\", dst_port=9999'\n  \
tracekit prog run bpf/obj/tc_dscp_mark.bpf.o tc_dscp_mark --data-in frame.bin --data-out out.bin\n  \
tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --data-hex 0200... --repeat 1000 --batches 20\n  \
tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --pcap capture.pcap --verbose\n  \
tracekit prog run bpf/obj/testrun_rawtp.bpf.o testrun_rawtp --ctx-hex '0300000000000000 0400000000000000'\n  \
tracekit prog run OBJ PROG --data-hex ... --json -o result.json"
    )]
    Run(Box<RunArgs>),
    /// Run a file of test vectors (cases with expected verdicts and output) as a suite.
    #[command(
        long_about = "Run the cases of one or more TOML test-vector files and report pass/fail per case; \
the exit status is 1 when any case fails. The same files run from Rust with \
tracekit_prog::vectors::Suite::from_file(PATH)?.run().\n\n\
Format (paths relative to the TOML file):\n\n  \
object = \"../obj/xdp_port_filter.bpf.o\"\n  \
program = \"xdp_port_filter\"\n\n  \
[[case]]\n  \
name = \"UDP to 9999 is dropped\"\n  \
packet = { proto = \"udp\", dst_port = 9999 }   # or data_hex = \"...\"\n  \
expect_retval = \"XDP_DROP\"                    # or a number\n  \
expect_data_hex = \"...\"                       # optional, whole output packet\n  \
expect_fields = { \"ip.tos\" = 184 }            # optional, fields of the output\n\n\
A case may also set object, program, ctx_hex, expect_ctx_hex, data_out_size and expect_error (part \
of the expected error message). Packet fields: proto (udp, tcp, icmp), src_mac, dst_mac, src_ip, \
dst_ip, src_port, dst_port, ttl, tos, payload, payload_hex. Output fields: len, eth.src, eth.dst, \
eth.type, ip.src, ip.dst, ip.tos, ip.dscp, ip.ttl, ip.proto, ip.len, ip.checksum, ip.checksum_ok, \
udp.src_port, udp.dst_port, tcp.src_port, tcp.dst_port.",
        after_help = "Examples:\n  tracekit prog test bpf/vectors/xdp_port_filter.toml\n  tracekit prog test bpf/vectors/*.toml --json -o results.json"
    )]
    Test(TestArgs),
}

/// Output flags shared by every report.
#[derive(Args)]
pub struct OutputArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `tracekit prog list`
#[derive(Args)]
pub struct ListArgs {
    /// The BPF object (ELF from clang -target bpf).
    object: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

/// `tracekit prog run`
#[derive(Args)]
pub struct RunArgs {
    /// The BPF object (ELF from clang -target bpf), or a program already in the kernel:
    /// id:N, pinned:PATH or name:NAME (as `bpftool prog show` lists them).
    object: PathBuf,
    /// The program's name (see `tracekit prog list OBJ`); not given for id:/pinned:/name:.
    program: Option<String>,
    /// Fill map NAME before the run from a JSON list of {"key": K, "value": V} (hex strings
    /// of the exact size, or unsigned integers); repeatable.
    #[arg(long = "map", value_name = "NAME=FILE.json")]
    maps: Vec<String>,
    /// Print every entry of every map of the program after the run (JSON: "maps").
    #[arg(long)]
    dump_maps: bool,
    /// Write the context after the run to FILE (raw bytes).
    #[arg(long, value_name = "FILE")]
    ctx_out: Option<PathBuf>,
    /// XDP live frames: each of the --repeat runs gets its own copy of the packet and
    /// XDP_TX/XDP_REDIRECT really send it (out of --dev); reports frames per second.
    #[arg(long)]
    live: bool,
    /// With --live: frames per batch (1-256; the kernel's default is 64).
    #[arg(long, requires = "live", value_name = "B")]
    batch_size: Option<u32>,
    /// The interface the packet arrives on (the context's ingress_ifindex): with --live,
    /// XDP_TX sends the frames out of it.
    #[arg(long, value_name = "IFNAME", conflicts_with_all = ["ctx_in", "ctx_hex"])]
    dev: Option<String>,
    /// Packet data from a file (raw bytes).
    #[arg(long, value_name = "FILE", group = "input")]
    data_in: Option<PathBuf>,
    /// Packet data in hex (spaces and colons allowed).
    #[arg(long, value_name = "HEX", group = "input")]
    data_hex: Option<String>,
    /// Packet built from fields, e.g. 'proto="tcp", dst_port=9999, ttl=1' (see `prog test --help`).
    #[arg(long, value_name = "FIELDS", group = "input")]
    packet: Option<String>,
    /// Run once per packet of a pcap/pcapng capture and count the verdicts.
    #[arg(long, value_name = "FILE", group = "input")]
    pcap: Option<PathBuf>,
    /// Context from a file (raw bytes).
    #[arg(long, value_name = "FILE", conflicts_with = "ctx_hex")]
    ctx_in: Option<PathBuf>,
    /// Context in hex.
    #[arg(long, value_name = "HEX")]
    ctx_hex: Option<String>,
    /// Runs per call (the kernel times them together and reports the mean).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Timed calls, each of --repeat runs; statistics are over these.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    batches: u32,
    /// Write the output packet to FILE.
    #[arg(long, value_name = "FILE")]
    data_out: Option<PathBuf>,
    /// Size of the output buffer; smaller than the output gives ENOSPC with the size needed.
    #[arg(long, value_name = "BYTES")]
    data_out_size: Option<u32>,
    /// Run on this CPU (raw_tp only, a kernel restriction).
    #[arg(long)]
    cpu: Option<u32>,
    /// Per-packet verdicts for --pcap; the whole verifier log when the kernel refuses the
    /// program (otherwise its last 20 lines).
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
}

/// `tracekit prog test`
#[derive(Args)]
pub struct TestArgs {
    /// Test-vector files (TOML).
    #[arg(required = true)]
    vectors: Vec<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

/// Runs a `tracekit prog` subcommand.
pub fn run(c: ProgCommand) -> anyhow::Result<ExitCode> {
    match c {
        ProgCommand::List(a) => list(a),
        ProgCommand::Run(a) if a.pcap.is_some() => replay(*a),
        ProgCommand::Run(a) => run_one(*a),
        ProgCommand::Test(a) => test(a),
    }
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let mut obj = BpfObject::from_file(&a.object)?;
    obj.check_loads();
    let target = OutputTarget::new(a.out.output.as_deref());
    if a.out.json {
        target.write_json(&obj.programs())?;
    } else {
        target.write(&obj.render_list(target.style()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The program to run: from an object file, or already in the kernel (id:/pinned:/name:),
/// with its maps filled from --map; -v puts the verifier's whole log in a refusal.
fn load(a: &RunArgs) -> anyhow::Result<Program> {
    let prog = match (
        KernelProgram::from_arg(&a.object).map_err(anyhow::Error::msg)?,
        &a.program,
    ) {
        (Some(which), None) => which.open()?,
        (Some(which), Some(name)) => {
            bail!("{which} names a program already; drop the program name '{name}'")
        }
        (None, None) => bail!(
            "give the program's name after the object (`tracekit prog list {}` lists them)",
            a.object.display()
        ),
        (None, Some(name)) => {
            BpfObject::from_file(&a.object)?
                .load(name)
                .map_err(|e| match e.verifier_log() {
                    Some(log) if a.verbose => {
                        anyhow::anyhow!("{}\nverifier log:\n{log}", e.summary())
                    }
                    _ => e.into(),
                })?
        }
    };
    for spec in &a.maps {
        let (name, file) = spec
            .split_once('=')
            .with_context(|| format!("--map {spec}: give NAME=FILE.json"))?;
        let json = std::fs::read_to_string(file)
            .with_context(|| format!("--map {spec}: cannot read {file}"))?;
        prog.fill_map(name, &json)?;
    }
    Ok(prog)
}

fn read_input(file: Option<&Path>, hex_text: Option<&str>, what: &str) -> anyhow::Result<Vec<u8>> {
    match (file, hex_text) {
        (Some(path), _) => std::fs::read(path)
            .with_context(|| format!("cannot read the {what} file {}", path.display())),
        (None, Some(text)) => Ok(hex::parse(text).with_context(|| format!("bad --{what}-hex"))?),
        (None, None) => Ok(Vec::new()),
    }
}

fn run_one(a: RunArgs) -> anyhow::Result<ExitCode> {
    let data = match &a.packet {
        Some(fields) => PacketSpec::from_fields(fields)?.build()?,
        None => read_input(a.data_in.as_deref(), a.data_hex.as_deref(), "data")?,
    };
    let ctx = match &a.dev {
        Some(dev) => xdp_md_context(data.len() as u32, interface_index(dev)?),
        None => read_input(a.ctx_in.as_deref(), a.ctx_hex.as_deref(), "ctx")?,
    };
    let prog = load(&a)?;
    let opts = RunOptions {
        data_in: &data,
        ctx_in: &ctx,
        data_out_size: a.data_out_size,
        repeat: a.repeat,
        cpu: a.cpu,
        live_frames: a.live.then_some(a.batch_size.unwrap_or(0)),
        ..Default::default()
    };
    let bar = crate::progress::bar(u64::from(a.batches), 10, "batches", false);
    let bench =
        prog.benchmark_with_progress(&opts, a.batches as usize, |n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    for (path, bytes) in [
        (&a.data_out, &bench.result.data_out),
        (&a.ctx_out, &bench.result.ctx_out),
    ] {
        if let Some(path) = path {
            std::fs::write(path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let maps = a.dump_maps.then(|| prog.dump_maps()).transpose()?;
    let report = RunReport {
        object: &a.object,
        program: &prog,
        data_in: &data,
        ctx_in: &ctx,
        bench: &bench,
        maps: maps.as_deref(),
        live_frames: opts.live_frames,
    };
    let target = OutputTarget::new(a.out.output.as_deref());
    if a.out.json {
        target.write_json(&report.to_json())?;
    } else {
        target.write(&report.render(target.style()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(a: RunArgs) -> anyhow::Result<ExitCode> {
    let path = a.pcap.clone().unwrap_or_default();
    if a.repeat > 1
        || a.batches > 1
        || a.ctx_in.is_some()
        || a.ctx_hex.is_some()
        || a.data_out.is_some()
    {
        bail!(
            "--pcap runs each packet once with no context; drop --repeat/--batches/--ctx-*/--data-out, or run one packet without --pcap"
        );
    }
    let capture = pcap::read(&path)?;
    if capture.truncated {
        eprintln!(
            "tracekit: warning: {} ends in the middle of packet {} (a capture cut short); replaying the {} complete packets",
            path.display(),
            capture.packets.len() + 1,
            capture.packets.len()
        );
    }
    let packets = capture.packets;
    let prog = load(&a)?;
    let bar = crate::progress::bar(packets.len() as u64, 10_000, "packets", false);
    let result = pcap::replay_with_progress(&prog, &packets, |n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    let report = ReplayReport {
        object: &a.object,
        program: &prog,
        pcap: &path,
        truncated: capture.truncated,
        replay: &result,
    };
    let target = OutputTarget::new(a.out.output.as_deref());
    if a.out.json {
        target.write_json(&report.to_json())?;
    } else {
        target.write(&report.render(a.verbose, target.style()))?;
    }
    // The verdicts of the other packets are printed, but a replay with failures is not a success.
    Ok(if report.errors().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let reports = a
        .vectors
        .iter()
        .map(|path| Suite::from_file(path)?.run())
        .collect::<Result<Vec<SuiteReport>, _>>()?;
    let target = OutputTarget::new(a.out.output.as_deref());
    if a.out.json {
        target.write_json(&reports)?;
    } else {
        target.write(&render_suites(&reports, target.style()))?;
    }
    let ok = reports.iter().all(SuiteReport::all_passed);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
