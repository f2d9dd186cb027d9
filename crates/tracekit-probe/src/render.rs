//! The reports a user reads: one line per streamed hit, the text table and the JSON document
//! of a run's [`Outcome`]. Engine-independent; where the text goes is the caller's choice.

use std::fmt::Write as _;

use serde_json::{Value, json};
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::units::ns_to_ms;

use crate::breakpoint::arch::{Arch, Handling, x86_64::X86_64};
use crate::event::{ExitStatus, HitEvent, Outcome};
use crate::spec::ProbeKind;
use crate::symbols::{Listing, Machine, ResolvedProbe};
use crate::usdt::UsdtNote;

/// One streamed hit as a line (with its newline): thread id and spec, then the first `nargs`
/// arguments at entry, or the return value and latency at return.
pub fn hit_line(h: &HitEvent, probes: &[ResolvedProbe], nargs: usize) -> String {
    let spec = probes.get(h.probe).map_or("?", |p| p.spec.text.as_str());
    let mut line = format!("{:>7} {spec}", h.tid);
    if h.kind == ProbeKind::Uretprobe {
        if let Some(r) = h.retval {
            let _ = write!(line, " = {}", fmt_int(r));
        }
        if let Some(ns) = h.latency_ns {
            let _ = write!(line, "  ({} us)", fmt_us(ns as f64));
        }
    } else if let Some(u) = probes.get(h.probe).and_then(|p| p.usdt.as_ref()) {
        // A USDT probe shows the arguments its note describes, all of them (up to six).
        for (i, (arg, &raw)) in u.args.iter().zip(&h.args).enumerate() {
            let _ = write!(line, " arg{i}={}", arg.show(raw));
        }
    } else if nargs > 0 {
        let a: Vec<String> = h.args[..nargs].iter().map(|&v| fmt_int(v)).collect();
        let _ = write!(line, "({})", a.join(", "));
    }
    line.push('\n');
    line
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
    text.push_str(&table(o).render(style));
    for p in &o.report.probes {
        if let Some(h) = p.histogram.as_ref().filter(|h| h.total() > 0) {
            let _ = write!(text, "\n@latency_ns[{}]:\n{}", p.spec, h.render(""));
        }
    }
    text
}

fn table(o: &Outcome) -> Table {
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
    for p in &o.report.probes {
        let mut row = vec![p.spec.clone(), p.hits.to_string(), p.missed.to_string()];
        if let Some(l) = p.latency.filter(|l| l.count > 0) {
            row.extend([
                ns_to_ms(l.total as f64),
                fmt_us(l.min as f64),
                fmt_us(l.mean()),
                fmt_us(l.max as f64),
                format!("{:.2}", l.rel_stddev_pct()),
            ]);
        }
        table.row(row);
    }
    table
}

/// The JSON report: engine, one object per probe, how the command ended, and the
/// [`Outcome::notes`].
pub fn json_report(o: &Outcome) -> Value {
    let probes: Vec<Value> = o
        .report
        .probes
        .iter()
        .map(|p| {
            // No returns seen: no latency, rather than zeros that look like data.
            let latency = p.latency.filter(|l| l.count > 0).map(|l| {
                json!({
                    "count": l.count, "total_ns": l.total, "min_ns": l.min, "max_ns": l.max,
                    "avg_ns": l.mean(), "stddev_ns": l.stddev(), "sum_sq_ns2": l.sum_sq.to_string(),
                })
            });
            json!({
                "spec": p.spec, "kind": p.kind, "hits": p.hits, "missed": p.missed, "lost": p.lost,
                "latency": latency,
                "histogram_log2": p.histogram.as_ref().filter(|h| h.total() > 0).map(|h| &h.buckets),
            })
        })
        .collect();
    let exit = match o.exit {
        Some(ExitStatus::Code(c)) => json!({"code": c}),
        Some(ExitStatus::Signal(s)) => json!({"signal": s}),
        None => Value::Null,
    };
    json!({ "engine": o.report.engine, "probes": probes, "exit": exit, "notes": o.notes() })
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
