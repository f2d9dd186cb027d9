//! `tracekit prog run`: one program on one input (timed), or on every packet of a capture.

use crate::output::OutputArgs;
use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracekit_prog::packet::PacketSpec;
use tracekit_prog::{
    BpfObject, KernelProgram, Program, ReplayReport, RunOptions, RunReport, hex, interface_index,
    pcap, xdp_md_context,
};

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

/// Runs `tracekit prog run`: a replay with --pcap, else one timed input.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.pcap.is_some() {
        replay(a)
    } else {
        run_one(a)
    }
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
    a.out.emit(
        &a.out.target(),
        || report.to_json(),
        |style| report.render(style),
    )?;
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
    a.out.emit(
        &a.out.target(),
        || report.to_json(),
        |style| report.render(a.verbose, style),
    )?;
    // The verdicts of the other packets are printed, but a replay with failures is not a success.
    Ok(if report.errors().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
