//! Reports of test runs, replays and suites, as text tables (aligned like perf's, colour only on a
//! terminal) and as JSON: what `tracekit prog` prints, kept beside the data it renders.

use crate::hex;
use crate::maps::MapDump;
use crate::pcap::Replay;
use crate::run::{Benchmark, Program};
use crate::vectors::SuiteReport;
use serde::Serialize;
use std::path::Path;
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::stats::SampleSummary;

/// One test run (or benchmark) of a program as a report: what went in, what came out, how long
/// it took, and the maps when they were dumped.
#[derive(Debug, Clone, Copy)]
pub struct RunReport<'a> {
    /// The object file, or `id:N` / `pinned:PATH` / `name:NAME`, as the user named it.
    pub object: &'a Path,
    /// The program that ran.
    pub program: &'a Program,
    /// The packet given (data_in).
    pub data_in: &'a [u8],
    /// The context given (ctx_in).
    pub ctx_in: &'a [u8],
    /// The run.
    pub bench: &'a Benchmark,
    /// The maps after the run, when asked for.
    pub maps: Option<&'a [MapDump]>,
    /// For a live-frames run, the batch size asked for (0: the kernel's default of 64), as in
    /// [`crate::RunOptions::live_frames`].
    pub live_frames: Option<u32>,
}

/// The JSON form of a run.
#[derive(Serialize)]
struct RunJson<'a> {
    object: String,
    program: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    retval: u32,
    verdict: String,
    data_in_len: usize,
    data_out: String,
    data_out_len: usize,
    changed_offsets: Vec<usize>,
    ctx_out: String,
    repeat: u32,
    batches: usize,
    duration_ns: Option<SampleSummary>,
    first_call_ns: Option<u64>,
    wall_ns_per_call: Option<SampleSummary>,
    fixed_cost_ns_per_call: Option<f64>,
    batch_means_ns: &'a [f64],
    #[serde(skip_serializing_if = "Option::is_none")]
    maps: Option<&'a [MapDump]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live_frames: Option<LiveJson>,
}

/// What a live-frames run sent, and how fast.
#[derive(Serialize)]
struct LiveJson {
    /// Frames sent in all: the cold call's one, then batches x repeat.
    frames_sent: u64,
    batch_size: u32,
    /// Frames per second from the kernel's median time per frame.
    pps_median: Option<f64>,
}

impl LiveJson {
    fn new(b: &Benchmark, batch_size: u32) -> Self {
        LiveJson {
            frames_sent: 1 + b.batches as u64 * u64::from(b.repeat),
            batch_size: if batch_size == 0 { 64 } else { batch_size },
            pps_median: b.per_run_ns.map(|s| 1e9 / s.median.max(1.0)),
        }
    }
}

impl RunReport<'_> {
    /// The JSON document of `prog run --json` (fields in a fixed order, for people).
    pub fn to_json(&self) -> impl Serialize + '_ {
        let (r, b, data) = (&self.bench.result, self.bench, self.data_in);
        RunJson {
            object: self.object.display().to_string(),
            program: self.program.name(),
            kind: self.program.kind().name(),
            retval: r.retval,
            verdict: self.program.verdict(r.retval),
            data_in_len: data.len(),
            data_out: hex::encode(&r.data_out),
            data_out_len: r.data_out.len(),
            changed_offsets: hex::changed_offsets(data, &r.data_out),
            ctx_out: hex::encode(&r.ctx_out),
            repeat: b.repeat,
            batches: b.batches,
            duration_ns: b.per_run_ns,
            first_call_ns: b.first_call_ns,
            wall_ns_per_call: b.wall_per_call_ns,
            fixed_cost_ns_per_call: b.fixed_cost_per_call_ns(),
            batch_means_ns: &b.batch_means_ns,
            maps: self.maps,
            live_frames: self.live_frames.map(|batch| LiveJson::new(b, batch)),
        }
    }

    /// The text report: verdict, output bytes (changes marked), timing table, maps.
    pub fn render(&self, style: Style) -> String {
        let mut text = match self.live_frames {
            Some(batch) => self.render_live(batch, style),
            None => self.render_run(style),
        };
        for dump in self.maps.iter().copied().flatten() {
            text.push_str(&format!("{dump}\n"));
        }
        text
    }

    fn render_live(&self, batch: u32, style: Style) -> String {
        let (prog, b) = (self.program, self.bench);
        let live = LiveJson::new(b, batch);
        let rate = live.pps_median.map_or("not measured".to_owned(), |pps| {
            format!("{:.2} Mpps", pps / 1e6)
        });
        format!(
            "\n {} ({}) in {}, live frames\n\n frames    {} sent (batches of {}); the kernel returns no verdict in live mode\n rate      {}\n\n{}",
            prog.name(),
            prog.kind(),
            self.object.display(),
            live.frames_sent,
            live.batch_size,
            style.bold(&rate),
            render_timing(prog, b)
        )
    }

    fn render_run(&self, style: Style) -> String {
        let (object, prog, data, ctx, b) = (
            self.object,
            self.program,
            self.data_in,
            self.ctx_in,
            self.bench,
        );
        let r = &b.result;
        let mut s = format!(
            "\n {} ({}) in {}\n\n",
            prog.name(),
            prog.kind(),
            object.display()
        );
        let verdict = prog.verdict(r.retval);
        if verdict == r.retval.to_string() {
            s.push_str(&format!(" retval    {}\n", r.retval));
        } else {
            s.push_str(&format!(
                " retval    {}  {}\n",
                r.retval,
                style.bold(&verdict)
            ));
        }
        if !data.is_empty() || !r.data_out.is_empty() {
            let changed = hex::changed_offsets(data, &r.data_out).len();
            let what = match changed {
                0 if r.data_out.len() == data.len() => "unchanged".to_owned(),
                n => format!("{n} bytes changed (marked ^^)"),
            };
            s.push_str(&format!(
                " data_out  {} bytes (in: {}), {what}\n",
                r.data_out.len(),
                data.len()
            ));
            s.push_str(&hex::dump_compact(
                data,
                &r.data_out,
                |x| style.yellow(x),
                8,
            ));
        }
        if !r.ctx_out.is_empty() {
            s.push_str(&format!(" ctx_out   {} bytes\n", r.ctx_out.len()));
            s.push_str(&hex::dump_compact(ctx, &r.ctx_out, |x| style.yellow(x), 8));
        }
        s.push('\n');
        s.push_str(&render_timing(prog, b));
        s
    }
}

fn render_timing(prog: &Program, b: &Benchmark) -> String {
    let Some(per_run) = b.per_run_ns else {
        return format!(
            " duration  not measured: the kernel does not time {} test runs\n\n",
            prog.kind()
        );
    };
    let mut t = Table::new(vec![
        Column::left("calls"),
        Column::right("runs/call"),
        Column::right("min"),
        Column::right("median"),
        Column::right("p99"),
        Column::right("max"),
        Column::right("stddev"),
    ]);
    let first = b.first_call_ns.unwrap_or(0).to_string();
    t.row(vec![
        "first (cold)".into(),
        "1".into(),
        first.clone(),
        first.clone(),
        first.clone(),
        first,
        "-".into(),
    ]);
    let f = |x: f64| format!("{x:.0}");
    t.row(vec![
        format!(
            "{} batch{}",
            b.batches,
            if b.batches == 1 { "" } else { "es" }
        ),
        b.repeat.to_string(),
        f(per_run.min),
        f(per_run.median),
        f(per_run.p99),
        f(per_run.max),
        format!("{:.1}", per_run.stddev),
    ]);
    let mut s = format!(
        " duration per run in ns (the kernel's mean over each call's runs):\n\n{}",
        t.render(Style::default())
    );
    if b.batches > 1 {
        let shown: Vec<String> = b
            .batch_means_ns
            .iter()
            .take(20)
            .map(|x| format!("{x:.0}"))
            .collect();
        let more = if b.batches > 20 { " ..." } else { "" };
        s.push_str(&format!(
            "\n batch by batch (ns/run): {}{more}\n",
            shown.join(" ")
        ));
    } else if b.repeat <= 1 {
        s.push_str("\n one warm run is a few timer ticks: use --repeat 1000 --batches 20 for figures to compare\n");
    }
    s.push('\n');
    if let (Some(wall), Some(fixed)) = (b.wall_per_call_ns, b.fixed_cost_per_call_ns()) {
        let in_prog = per_run.median * f64::from(b.repeat);
        s.push_str(&format!(
            " wall time per call: median {} = {} running the program + {} fixed cost (syscall, copies{})\n\n",
            human_ns(wall.median),
            human_ns(in_prog),
            human_ns(fixed),
            if prog.kind().name() == "xdp" && b.repeat > 1 { ", XDP dispatcher switch for repeat > 1" } else { "" }
        ));
    }
    s
}

fn human_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.1} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

/// A replay of a capture (`prog run --pcap`) as a report.
#[derive(Debug, Clone, Copy)]
pub struct ReplayReport<'a> {
    /// The object, as the user named it.
    pub object: &'a Path,
    /// The program that ran.
    pub program: &'a Program,
    /// The capture file.
    pub pcap: &'a Path,
    /// The capture ended inside a packet, which was left out.
    pub truncated: bool,
    /// The verdicts.
    pub replay: &'a Replay,
}

/// The JSON form of a replay.
#[derive(Serialize)]
struct ReplayJson<'a> {
    object: String,
    program: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    pcap: String,
    truncated: bool,
    #[serde(flatten)]
    replay: &'a Replay,
}

impl ReplayReport<'_> {
    /// The JSON document of `prog run --pcap --json` (fields in a fixed order, for people).
    pub fn to_json(&self) -> impl Serialize + '_ {
        ReplayJson {
            object: self.object.display().to_string(),
            program: self.program.name(),
            kind: self.program.kind().name(),
            pcap: self.pcap.display().to_string(),
            truncated: self.truncated,
            replay: self.replay,
        }
    }

    /// The packets that could not run (packet number, reason).
    pub fn errors(&self) -> Vec<(usize, &str)> {
        self.replay
            .verdicts
            .iter()
            .filter_map(|v| v.error.as_deref().map(|e| (v.packet, e)))
            .collect()
    }

    /// The text report: verdict counts, each packet when `verbose`, the first failure.
    pub fn render(&self, verbose: bool, style: Style) -> String {
        let (prog, result, style) = (self.program, self.replay, style);
        let mut s = format!(
            "\n {} ({}) on {}: {} packets\n\n",
            prog.name(),
            prog.kind(),
            self.pcap.display(),
            result.packets
        );
        let mut t = Table::new(vec![
            Column::left("verdict"),
            Column::right("packets"),
            Column::right("%"),
        ]);
        for (verdict, &n) in &result.counts {
            t.row(vec![
                verdict.clone(),
                n.to_string(),
                format!("{:.1}", 100.0 * n as f64 / result.packets.max(1) as f64),
            ]);
        }
        s.push_str(&t.render(style));
        if verbose {
            s.push('\n');
            s.push_str(&packet_table(result).render(style));
        }
        let errors = self.errors();
        if let Some((packet, e)) = errors.first() {
            let more = if errors.len() > 1 {
                format!(" ({} more: --json lists them)", errors.len() - 1)
            } else {
                String::new()
            };
            s.push_str(&format!("\n packet {packet} could not run: {e}{more}\n"));
        }
        s.push('\n');
        s
    }
}

/// One row per packet: number, length, retval, verdict, whether it was modified, a summary.
fn packet_table(result: &Replay) -> Table {
    let mut t = Table::new(vec![
        Column::right("packet"),
        Column::right("len"),
        Column::right("retval"),
        Column::left("verdict"),
        Column::left("modified"),
        Column::left("summary"),
    ]);
    for v in &result.verdicts {
        let retval = if v.error.is_some() {
            "-".to_owned()
        } else {
            v.retval.to_string()
        };
        let modified = if v.modified { "yes" } else { "no" }.to_owned();
        t.row(vec![
            v.packet.to_string(),
            v.len.to_string(),
            retval,
            v.verdict.clone(),
            modified,
            v.summary.clone(),
        ]);
    }
    t
}

/// The text report of test-vector suites: a PASS/FAIL table per file, the failures, a total.
pub fn render_suites(reports: &[SuiteReport], style: Style) -> String {
    let mut s = String::new();
    for r in reports {
        s.push_str(&format!("\n {}: {} cases\n\n", r.file, r.cases.len()));
        let mut t = Table::new(vec![
            Column::left("result"),
            Column::left("program"),
            Column::left("verdict"),
            Column::left("case"),
        ]);
        for c in &r.cases {
            let result = if c.passed {
                style.green("PASS")
            } else {
                style.red("FAIL")
            };
            t.row(vec![
                result,
                c.program.clone(),
                c.verdict.clone().unwrap_or_else(|| "-".into()),
                c.name.clone(),
            ]);
        }
        s.push_str(&t.render(style));
        for c in r.failures() {
            s.push_str(&format!("\n FAIL {}\n", c.name));
            for f in &c.failures {
                s.push_str(&format!("      {f}\n"));
            }
        }
    }
    let passed: usize = reports.iter().map(|r| r.passed).sum();
    let failed: usize = reports.iter().map(|r| r.failed).sum();
    let summary = format!("{passed} passed, {failed} failed");
    s.push_str(&format!(
        "\n {}\n\n",
        if failed == 0 {
            style.green(&summary)
        } else {
            style.red(&summary)
        }
    ));
    s
}
