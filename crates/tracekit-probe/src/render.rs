//! The reports a user reads: one line per streamed hit, the text table and the JSON document
//! of a run's [`Outcome`]. Engine-independent; where the text goes is the caller's choice.

use std::fmt::Write as _;

use serde_json::{Value, json};
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::stats::LatencyStats;
use tracekit_core::units::ns_to_ms;

use crate::breakpoint::arch::{Arch, Handling, x86_64::X86_64};
use crate::event::{ExitStatus, HitEvent, Outcome};
use crate::report::{Interval, ProbeReport};
use crate::spec::ProbeKind;
use crate::symbols::{Listing, Machine, ResolvedProbe};
use crate::usdt::{ListReport, UsdtNote};

/// Turns streamed hits into lines (`--print`): the thread, the probe, then the arguments at
/// entry, named and typed from DWARF where the binary (or its separate debug file) has it,
/// or the return value and latency at return.
pub struct HitPrinter<'a> {
    probes: &'a [ResolvedProbe],
    nargs: Option<usize>,
    functions: Vec<Option<crate::dwarf::Function>>,
}

impl<'a> HitPrinter<'a> {
    /// A printer that names arguments from DWARF. `nargs`: how many arguments to show;
    /// `None` shows a function's named parameters, or 3 registers without DWARF.
    pub fn new(probes: &'a [ResolvedProbe], nargs: Option<usize>) -> Self {
        let mut printer = Self::without_names(probes, nargs);
        printer.functions = functions_of(probes);
        printer
    }

    /// A printer of raw registers only.
    pub fn without_names(probes: &'a [ResolvedProbe], nargs: Option<usize>) -> Self {
        HitPrinter {
            probes,
            nargs,
            functions: vec![None; probes.len()],
        }
    }

    /// What DWARF says of probe `i`'s function, if anything.
    pub fn function(&self, i: usize) -> Option<&crate::dwarf::Function> {
        self.functions.get(i)?.as_ref()
    }

    /// One hit as a line.
    pub fn line(&self, h: &HitEvent) -> String {
        let spec = self
            .probes
            .get(h.probe)
            .map_or("?", |p| p.spec.text.as_str());
        let mut line = format!("{:>7} {spec}", h.tid);
        if h.kind == ProbeKind::Uretprobe {
            if let Some(r) = h.retval {
                let shown = match self.function(h.probe).and_then(|f| f.ret) {
                    Some(kind) => kind.show(r),
                    None => fmt_int(r),
                };
                let _ = write!(line, " = {shown}");
            }
            if let Some(ns) = h.latency_ns {
                let _ = write!(line, "  ({} us)", fmt_us(ns as f64));
            }
        } else if let Some(u) = self.probes.get(h.probe).and_then(|p| p.usdt.as_ref()) {
            // A USDT probe shows the arguments its note describes (up to six, or --args N).
            let n = self.nargs.unwrap_or(6);
            for (i, (arg, &raw)) in u.args.iter().zip(&h.args).take(n).enumerate() {
                let _ = write!(line, " arg{i}={}", arg.show(raw));
            }
        } else {
            let args = self.arguments(h);
            if !args.is_empty() || self.function(h.probe).is_some() {
                let _ = write!(line, "({})", args.join(", "));
            }
        }
        line.push('\n');
        line
    }

    /// The named parameters in their registers (`...` after them when DWARF could not place
    /// the rest), or without DWARF the first registers raw.
    fn arguments(&self, h: &HitEvent) -> Vec<String> {
        // Without DWARF, or when not even the first parameter could be placed: raw registers.
        let Some(f) = self
            .function(h.probe)
            .filter(|f| f.complete || !f.params.is_empty())
        else {
            let n = self.nargs.unwrap_or(3).min(6);
            return h.args[..n].iter().map(|&v| fmt_int(v)).collect();
        };
        let limit = self.nargs.unwrap_or(6);
        let mut shown: Vec<String> = (f.params.iter())
            .filter(|p| p.reg < limit)
            .map(|p| p.show(h.args[p.reg]))
            .collect();
        if !f.complete && self.nargs.is_none() {
            shown.push("...".into());
        }
        shown
    }
}

/// DWARF of every probe at a function's first instruction, reading each binary once. GCC's
/// clones (`f.constprop.0`, `f.isra.0`, `f.part.0`) are left out: their DWARF describes the
/// original's parameters, not the clone's registers.
fn functions_of(probes: &[ResolvedProbe]) -> Vec<Option<crate::dwarf::Function>> {
    use std::collections::{BTreeMap, HashSet};
    let at_entry = |p: &ResolvedProbe| {
        matches!(p.spec.kind, ProbeKind::Uprobe | ProbeKind::Uretprobe)
            && p.vaddr == p.symbol_vaddr
            && !p.symbol.as_deref().is_some_and(|s| s.contains('.'))
    };
    let mut by_binary: BTreeMap<&std::path::Path, HashSet<u64>> = BTreeMap::new();
    for p in probes.iter().filter(|p| at_entry(p)) {
        by_binary.entry(&p.binary).or_default().insert(p.vaddr);
    }
    let found: BTreeMap<_, _> = by_binary
        .into_iter()
        .map(|(binary, addresses)| (binary, crate::dwarf::parameters(binary, &addresses)))
        .collect();
    probes
        .iter()
        .map(|p| {
            at_entry(p)
                .then(|| found.get(p.binary.as_path())?.get(&p.vaddr).cloned())
                .flatten()
        })
        .collect()
}

/// An integer register value: small values (positive or negative) in decimal, anything else
/// (pointers) in hex.
pub fn fmt_int(v: u64) -> String {
    let s = v as i64;
    if (-1_000_000_000..=1_000_000_000_000).contains(&s) {
        s.to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Nanoseconds as microseconds with three decimals.
pub fn fmt_us(ns: f64) -> String {
    format!("{:.3}", ns / 1e3)
}

/// The text report: a header naming the engine and how the command ended, one table row per
/// probe, then the latency histogram of every return probe that saw a return.
pub fn text_report(o: &Outcome, style: Style) -> String {
    let mut text = format!("\n Probes ({} engine)", o.report.engine);
    match o.exit {
        Some(ExitStatus::Code(c)) => {
            let _ = write!(text, ", command exited with status {c}");
        }
        Some(ExitStatus::Signal(s)) => {
            let _ = write!(text, ", command killed by signal {s}");
        }
        None => {}
    }
    text.push_str(":\n\n");
    text.push_str(&table(&o.report, false).render(style));
    for p in &o.report.probes {
        if let Some(h) = p.histogram.as_ref().filter(|h| h.total() > 0) {
            let _ = write!(text, "\n@latency_ns[{}]:\n{}", p.spec, h.render(""));
        }
    }
    text
}

/// One interval of `-i SECS`: its number, its length, and the table of what happened in it.
/// Min and max are unknown per interval (`-`).
pub fn interval_text(i: &Interval, style: Style) -> String {
    format!(
        "\n Interval {} ({:.3} s, {} engine):\n\n{}",
        i.index,
        i.seconds,
        i.report.engine,
        table(&i.report, true).render(style)
    )
}

/// One interval as a JSON document (a line of NDJSON): `interval`, `seconds`, `engine` and
/// the `probes` array of [`json_report`] (min and max absent).
pub fn interval_json(i: &Interval) -> Value {
    json!({
        "interval": i.index, "seconds": i.seconds, "engine": i.report.engine,
        "probes": probes_json(&i.report, true),
    })
}

fn table(report: &ProbeReport, interval: bool) -> Table {
    let mut table = Table::new(vec![
        Column::left("probe"),
        Column::right("hits"),
        Column::right("missed"),
        Column::right("total(ms)"),
        Column::right("min(us)"),
        Column::right("avg(us)"),
        Column::right("max(us)"),
        Column::right("stddev(%)"),
    ]);
    for p in &report.probes {
        table.row(row(p.spec.clone(), p.hits, p.missed, p.latency, interval));
        for t in &p.threads {
            let name = format!("  tid {}", t.tid);
            table.row(row(name, t.hits, t.missed, t.latency, interval));
        }
        if p.unattributed > 0 {
            table.row(vec![
                "  (no thread: map full)".into(),
                p.unattributed.to_string(),
            ]);
        }
    }
    table
}

fn row(
    name: String,
    hits: u64,
    missed: u64,
    latency: Option<LatencyStats>,
    interval: bool,
) -> Vec<String> {
    let mut row = vec![name, hits.to_string(), missed.to_string()];
    if let Some(l) = latency.filter(|l| l.count > 0) {
        let extreme = |v: u64| match interval {
            true => "-".to_owned(),
            false => fmt_us(v as f64),
        };
        row.extend([
            ns_to_ms(l.total as f64),
            extreme(l.min),
            fmt_us(l.mean()),
            extreme(l.max),
            format!("{:.2}", l.rel_stddev_pct()),
        ]);
    }
    row
}

/// The JSON report: engine, one object per probe, how the command ended, and the
/// [`Outcome::notes`].
pub fn json_report(o: &Outcome) -> Value {
    let exit = match o.exit {
        Some(ExitStatus::Code(c)) => json!({"code": c}),
        Some(ExitStatus::Signal(s)) => json!({"signal": s}),
        None => Value::Null,
    };
    json!({
        "engine": o.report.engine, "probes": probes_json(&o.report, false), "exit": exit,
        "notes": o.notes(),
    })
}

fn probes_json(report: &ProbeReport, interval: bool) -> Vec<Value> {
    report
        .probes
        .iter()
        .map(|p| {
            let mut v = json!({
                "spec": p.spec, "kind": p.kind, "hits": p.hits, "missed": p.missed, "lost": p.lost,
                "latency": latency_json(p.latency, interval),
                "histogram_log2": p.histogram.as_ref().filter(|h| h.total() > 0).map(|h| &h.buckets),
            });
            if report.by_thread {
                v["threads"] = p
                    .threads
                    .iter()
                    .map(|t| {
                        json!({"tid": t.tid, "hits": t.hits, "missed": t.missed,
                               "latency": latency_json(t.latency, interval)})
                    })
                    .collect();
                v["unattributed"] = p.unattributed.into();
            }
            v
        })
        .collect()
}

/// No returns seen: no latency, rather than zeros that look like data. Intervals have no
/// min and max.
fn latency_json(latency: Option<LatencyStats>, interval: bool) -> Option<Value> {
    latency.filter(|l| l.count > 0).map(|l| {
        let mut v = json!({
            "count": l.count, "total_ns": l.total, "avg_ns": l.mean(), "stddev_ns": l.stddev(),
            "sum_sq_ns2": l.sum_sq.to_string(),
        });
        if !interval {
            v["min_ns"] = l.min.into();
            v["max_ns"] = l.max.into();
        }
        v
    })
}

/// The functions `--list` found: name, address, size, first instruction, and whether each
/// engine can probe its entry (the BPF engine: kernel uprobes on x86-64; the breakpoint
/// engine: how it would run the displaced instruction, or why it cannot).
pub fn listing_table(machine: &Machine, listings: &[Listing], style: Style) -> String {
    let mut t = Table::new(vec![
        Column::left("function"),
        Column::right("address"),
        Column::right("size"),
        Column::left("first instruction"),
        Column::left("bpf"),
        Column::left("ptrace"),
    ]);
    for l in listings {
        let (insn, bpf, ptrace) = first_instruction(machine, l);
        let bpf = match (bpf, machine) {
            (true, _) => "yes",
            (false, Machine::X86_64) => "no: AVX-512",
            (false, _) => "no",
        };
        let name = match (&l.file_name, l.ifunc) {
            (_, true) => format!("{} (IFUNC)", l.name),
            (Some(file), false) if l.name.contains("::") => format!("{} [{file}]", l.name),
            // An old version of a symbol (`memcpy@GLIBC_2.2.5`) is told apart by it.
            (Some(file), false) if file.contains('@') && !file.contains("@@") => file.clone(),
            _ => l.name.clone(),
        };
        t.row(vec![
            name,
            format!("{:#x}", l.vaddr),
            l.size.to_string(),
            insn,
            bpf.into(),
            ptrace,
        ]);
    }
    t.render(style)
}

/// The JSON form of `--list`: the binary and one object per function.
pub fn listing_json(path: &std::path::Path, machine: &Machine, listings: &[Listing]) -> Value {
    let functions: Vec<Value> = listings
        .iter()
        .map(|l| {
            let (insn, bpf, ptrace) = first_instruction(machine, l);
            json!({
                "name": l.name,
                "file_name": l.file_name,
                "address": l.vaddr,
                "size": l.size,
                "ifunc": l.ifunc,
                "first_instruction": insn,
                "bpf": bpf,
                "ptrace": ptrace,
            })
        })
        .collect();
    json!({ "binary": path, "machine": machine.to_string(), "functions": functions })
}

/// The first instruction's text, whether the BPF engine takes it (kernel uprobes on x86-64,
/// except AVX-512 instructions, see `BpfError::Avx512`), and the breakpoint engine's verdict.
fn first_instruction(machine: &Machine, l: &Listing) -> (String, bool, String) {
    if l.ifunc {
        return ("(resolver)".into(), true, "implementation".into());
    }
    if *machine != Machine::X86_64 {
        return ("-".into(), false, "-".into());
    }
    match X86_64::decode(&l.code, l.vaddr) {
        None => ("(not decodable)".into(), false, "no".into()),
        Some(insn) => {
            let verdict = match X86_64::classify(&insn) {
                Handling::Simulate => "simulate".to_owned(),
                Handling::OutOfLine => "out of line".to_owned(),
                Handling::Refuse(reason) => format!("no: {reason}"),
            };
            let bpf = !crate::bpf::is_avx512(&insn);
            (X86_64::text(&insn), bpf, verdict)
        }
    }
}

/// `--list` as text: the functions (if listed), then the USDT probe sites (if any).
pub fn list_text(r: &ListReport, style: Style) -> String {
    let name = r.path.display();
    let Some(machine) = &r.machine else {
        let heading = format!("\n {name}: {} USDT probe sites\n\n", r.usdt.len());
        return heading + &usdt_table(&r.usdt, style);
    };
    let mut text = format!("\n {name}: {} functions\n\n", r.functions.len());
    text += &listing_table(machine, &r.functions, style);
    if !r.usdt.is_empty() {
        text += &format!("\n {} USDT probe sites\n\n", r.usdt.len());
        text += &usdt_table(&r.usdt, style);
    }
    text
}

/// `--list` as JSON: `binary`, `machine` and `functions` (when functions were listed) and
/// `usdt`.
pub fn list_json(r: &ListReport) -> Value {
    let mut v = match &r.machine {
        Some(machine) => listing_json(&r.path, machine, &r.functions),
        None => json!({ "binary": r.path }),
    };
    v["usdt"] = usdt_json(&r.usdt);
    v
}

/// The USDT probes `--list` found: one row per site (a probe with several sites has several
/// rows), with its address, semaphore and argument format.
pub fn usdt_table(notes: &[UsdtNote], style: Style) -> String {
    let mut t = Table::new(vec![
        Column::left("usdt probe"),
        Column::right("address"),
        Column::right("semaphore"),
        Column::left("arguments"),
    ]);
    for n in notes {
        t.row(vec![
            n.full_name(),
            format!("{:#x}", n.pc),
            n.semaphore.map_or("-".into(), |s| format!("{s:#x}")),
            n.args.clone(),
        ]);
    }
    t.render(style)
}

/// The JSON form of the USDT probes `--list` found, one object per site.
pub fn usdt_json(notes: &[UsdtNote]) -> Value {
    notes
        .iter()
        .map(|n| {
            json!({
                "provider": n.provider, "name": n.name, "address": n.pc,
                "semaphore": n.semaphore, "arguments": n.args,
            })
        })
        .collect()
}
