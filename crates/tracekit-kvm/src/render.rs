//! The text reports of both tests, laid out as `tracekit bench` prints them. The JSON documents
//! are the reports themselves ([`DemandPagingOutcome`] and [`DirtyLogOutcome`] derive `Serialize`),
//! so a caller writes them with any serde writer.

use crate::demand::DemandPagingOutcome;
use crate::dirty::DirtyLogOutcome;
use crate::options::Engine;
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::units::human_bytes;

/// The demand-paging report: a heading, a row per vCPU and the total, userfaultfd's copy
/// statistics when it served the faults, and whether every page held what was written.
pub fn demand_paging(r: &DemandPagingOutcome, style: Style) -> String {
    let mut out = demand_paging_heading(r);
    let mut table = Table::new(vec![
        Column::right("vcpu"),
        Column::right("cpu"),
        Column::right("pages"),
        Column::right("seconds"),
        Column::right("guest s"),
        Column::right("pages/sec"),
    ]);
    for (i, secs) in r.vcpu_seconds.iter().enumerate() {
        let cpu = r.cpus.as_ref().map_or("-".to_owned(), |c| c[i].to_string());
        let guest = r.guest_seconds.as_ref().map(|g| g[i]);
        table.row(vec![
            i.to_string(),
            cpu,
            r.pages_per_vcpu.to_string(),
            format!("{secs:.3}"),
            guest.map_or("-".to_owned(), |g| format!("{g:.3}")),
            rate(r.pages_per_vcpu, *secs),
        ]);
    }
    table.row(vec![
        "total".into(),
        String::new(),
        r.total_pages.to_string(),
        format!("{:.3}", r.total_seconds),
        String::new(),
        format!("{:.0}", r.pages_per_sec),
    ]);
    out += &table.render(style);
    out.push('\n');
    if let Some(u) = &r.uffd {
        let ioctl = match u.kind {
            crate::uffd::FaultKind::Missing => "UFFDIO_COPY",
            crate::uffd::FaultKind::Minor => "UFFDIO_CONTINUE",
        };
        out += &format!(
            " userfaultfd: {} faults, {} {ioctl} ({} already present), mean {:.1} us, max {:.1} us\n",
            u.faults,
            u.copies,
            u.already_present,
            u.copy_mean_ns / 1e3,
            u.copy_max_ns as f64 / 1e3
        );
        out += " fault latency in the handler (read to resolved, ns):\n";
        out += &u.fault_latency_ns.render("");
    }
    out += &verified_line(
        r.verified,
        r.verification.pages_checked,
        r.pages_visited,
        style,
    );
    out
}

/// Who touched the memory, how the faults were served, and where the guest put it.
fn demand_paging_heading(r: &DemandPagingOutcome) -> String {
    let who = match r.engine {
        Engine::Kvm => "vCPUs",
        Engine::Host => "host threads (--no-kvm)",
    };
    let served = match &r.uffd {
        None => "faults served by the kernel".to_owned(),
        Some(u) => format!(
            "faults served by userfaultfd ({} handler{})",
            u.handlers,
            if u.handlers == 1 { "" } else { "s" }
        ),
    };
    let mut out = format!(
        "\n Demand paging: {} {who} x {} ({} pages each), {} memory, {served}\n",
        r.vcpus,
        human_bytes(r.bytes_per_vcpu),
        r.pages_per_vcpu,
        r.backing.name()
    );
    out += &guest_line(r.guest_mode, r.test_gpa, r.test_gva);
    out.push('\n');
    out
}

/// The dirty-log report: a heading, the populate and logging on/off times, a row per
/// iteration, the means, and whether every page held its last write.
pub fn dirty_log(r: &DirtyLogOutcome, style: Style) -> String {
    let mut out = dirty_log_heading(r);
    let mut table = Table::new(vec![
        Column::right("iteration"),
        Column::right("dirty s"),
        Column::right("slowest vcpu s"),
        Column::right("get log s"),
        Column::right("clear log s"),
        Column::right("dirty pages"),
        Column::left("bitmap"),
    ]);
    for i in &r.iterations {
        let slowest = i.vcpu_seconds.iter().copied().fold(0.0, f64::max);
        let bitmap = match i.bitmap_exact {
            None => "-".to_owned(),
            Some(true) => style.green("exact"),
            Some(false) => style.red(&format!("expected {}", r.expected_dirty_pages)),
        };
        table.row(vec![
            i.iteration.to_string(),
            format!("{:.3}", i.dirty_seconds),
            format!("{slowest:.3}"),
            seconds(i.get_log_seconds),
            seconds(i.clear_log_seconds),
            i.dirty_pages.map_or("-".to_owned(), |p| p.to_string()),
            bitmap,
        ]);
    }
    out += &table.render(style);
    out += &dirty_log_means(r);
    out += &verified_line(
        r.verified,
        r.verification.pages_checked,
        r.layout.total_pages(),
        style,
    );
    out
}

/// The guest's mode and where its test memory is, for a report's heading (nothing without a
/// guest).
fn guest_line(mode: Option<&str>, gpa: Option<u64>, gva: u64) -> String {
    match (mode, gpa) {
        (Some(mode), Some(gpa)) => {
            format!(" Guest: {mode}; test memory at GPA {gpa:#x}, GVA {gva:#x}\n")
        }
        _ => String::new(),
    }
}

/// Who dirtied the memory, how the log was collected, and the times around the iterations.
fn dirty_log_heading(r: &DirtyLogOutcome) -> String {
    let l = &r.layout;
    let (who, collect) = match (r.engine, r.manual_protect) {
        (Engine::Host, _) => ("host threads (--no-kvm)", "no log to collect"),
        (Engine::Kvm, true) => (
            "vCPUs",
            "collecting with KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG",
        ),
        (Engine::Kvm, false) => ("vCPUs", "collecting with KVM_GET_DIRTY_LOG"),
    };
    let p = &r.pattern;
    let writing = match p.write_percent {
        None => format!("writing 1 page in {}", p.wr_fract),
        Some(w) => format!("writing {w}% of accesses"),
    };
    let order = if p.random {
        format!(" at random (seed {})", r.seed)
    } else {
        String::new()
    };
    let mut out = format!(
        "\n Dirty logging: {} {who} x {} ({} pages each), {} memory, {writing}{order}, {collect}\n",
        l.vcpus,
        human_bytes(l.bytes_per_vcpu),
        l.pages_per_vcpu,
        r.backing.name(),
    );
    out += &guest_line(r.guest_mode, r.test_gpa, l.gva);
    let meanwhile = r
        .passes_while_disabling
        .as_ref()
        .map_or(String::new(), |p| {
            let passes: Vec<String> = p.iter().map(u64::to_string).collect();
            format!(" (vCPUs dirtying meanwhile: {} passes)", passes.join(" + "))
        });
    out += &format!(
        "\n Populate memory: {:.3} s   enable dirty logging: {} s   disable: {} s{meanwhile}\n\n",
        r.populate_seconds,
        seconds(r.enable_seconds),
        seconds(r.disable_seconds)
    );
    out
}

/// The mean iteration's costs, or nothing when there were no iterations to average.
fn dirty_log_means(r: &DirtyLogOutcome) -> String {
    let Some(d) = r.dirty_seconds else {
        return String::new();
    };
    let rate = r.expected_dirty_pages as f64 / d.mean.max(1e-9);
    let mut out = format!(
        "\n Mean per iteration: dirty {:.3} s ({rate:.0} written pages/sec)",
        d.mean
    );
    if let Some(g) = r.get_log_seconds {
        out += &format!(", get log {:.6} s", g.mean);
    }
    if let Some(cl) = r.clear_log_seconds {
        out += &format!(", clear log {:.6} s", cl.mean);
    }
    out.push('\n');
    out
}

/// An optional duration as the tables print it: microsecond precision, `-` when not measured.
fn seconds(s: Option<f64>) -> String {
    s.map_or("-".to_owned(), |s| format!("{s:.6}"))
}

/// Pages per second, without dividing by zero for a pass too short to time.
fn rate(pages: u64, secs: f64) -> String {
    format!("{:.0}", pages as f64 / secs.max(1e-9))
}

fn verified_line(ok: bool, checked: u64, total: u64, style: Style) -> String {
    if ok {
        format!(
            " {}: all {checked} of {total} pages hold what was written\n",
            style.green("verified")
        )
    } else {
        format!(
            " {}: {checked} of {total} pages checked, some do not hold what was written\n",
            style.red("NOT verified")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirty::IterationOutcome;
    use crate::layout::{Layout, Verification};
    use crate::memory::Backing;
    use crate::uffd::{FaultKind, HandlerMode, UffdStats};
    use tracekit_core::stats::{Log2Histogram, Samples};

    // The CLI's output is these bytes (tracekit's tests/bench.rs reads them), so any change to
    // the layout shows up here first.
    const PLAIN: Style = Style { colour: false };

    fn verification(pages: u64) -> Verification {
        Verification {
            pages_checked: pages,
            mismatches: 0,
            first_mismatch: None,
        }
    }

    #[test]
    fn demand_paging_text() {
        let r = DemandPagingOutcome {
            test: "demand-paging",
            engine: Engine::Kvm,
            guest_mode: Some("user mode (CPL 3)"),
            vcpus: 2,
            bytes_per_vcpu: 4 << 20,
            pages_per_vcpu: 1024,
            total_pages: 2048,
            pages_visited: 2048,
            backing: Backing::Anonymous,
            test_gpa: Some(0xfc_ff7f_f000),
            test_gva: 0xc000_0000,
            cpus: Some(vec![0, 1]),
            uffd: Some(UffdStats {
                mode: HandlerMode::PerVcpu,
                kind: FaultKind::Missing,
                uffds: 2,
                handlers: 2,
                readers_per_uffd: 1,
                delay_us: 0,
                faults: 2048,
                copies: 2048,
                already_present: 0,
                copy_mean_ns: 36_700.0,
                copy_max_ns: 5_133_700,
                fault_latency_ns: Log2Histogram {
                    buckets: vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2000, 0, 48],
                },
            }),
            vcpu_seconds: vec![0.104, 0.117],
            guest_seconds: Some(vec![0.1, 0.1155]),
            total_seconds: 0.117,
            pages_per_sec: 17489.0,
            verified: true,
            verification: verification(2048),
        };
        let want = "
 Demand paging: 2 vCPUs x 4 MiB (1024 pages each), anonymous memory, faults served by userfaultfd (2 handlers)
 Guest: user mode (CPL 3); test memory at GPA 0xfcff7ff000, GVA 0xc0000000

    vcpu  cpu  pages  seconds  guest s  pages/sec
   -----  ---  -----  -------  -------  ---------
       0    0   1024    0.104    0.100       9846
       1    1   1024    0.117    0.116       8752
   total        2048    0.117               17489

 userfaultfd: 2048 faults, 2048 UFFDIO_COPY (0 already present), mean 36.7 us, max 5133.7 us
 fault latency in the handler (read to resolved, ns):
[2K, 4K)             2000 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4K, 8K)                0 |                                                    |
[8K, 16K)              48 |@                                                   |
 verified: all 2048 of 2048 pages hold what was written
";
        assert_eq!(demand_paging(&r, PLAIN), want);
    }

    #[test]
    fn dirty_log_text() {
        let iteration = |i, secs| IterationOutcome {
            iteration: i,
            dirty_seconds: secs,
            vcpu_seconds: vec![secs],
            guest_seconds: Some(vec![secs]),
            get_log_seconds: Some(0.000013),
            clear_log_seconds: None,
            dirty_pages: Some(1024),
            expected_dirty_pages: 1024,
            bitmap_exact: Some(true),
        };
        let summary = |v: &[f64]| v.iter().copied().collect::<Samples>().summary();
        let r = DirtyLogOutcome {
            test: "dirty-log",
            engine: Engine::Kvm,
            guest_mode: Some("user mode (CPL 3)"),
            layout: Layout::new(1, 4 << 20, Backing::Anonymous, 8).unwrap(),
            test_gpa: Some(0x1_0000_0000),
            backing: Backing::Anonymous,
            wr_fract: 1,
            pattern: crate::access::AccessPattern::WRITE_ALL,
            seed: 1,
            manual_protect: false,
            memslots: Some(1),
            populate_seconds: 0.04,
            enable_seconds: Some(0.000145),
            disable_seconds: None,
            passes_while_disabling: None,
            expected_dirty_pages: 1024,
            iterations: vec![iteration(1, 0.015), iteration(2, 0.045)],
            dirty_seconds: summary(&[0.015, 0.045]),
            get_log_seconds: summary(&[0.000013, 0.000013]),
            clear_log_seconds: None,
            bitmap_exact: Some(true),
            verified: true,
            verification: verification(1024),
        };
        let want = "
 Dirty logging: 1 vCPUs x 4 MiB (1024 pages each), anonymous memory, writing 1 page in 1, collecting with KVM_GET_DIRTY_LOG
 Guest: user mode (CPL 3); test memory at GPA 0x100000000, GVA 0xc0000000

 Populate memory: 0.040 s   enable dirty logging: 0.000145 s   disable: - s

   iteration  dirty s  slowest vcpu s  get log s  clear log s  dirty pages  bitmap
   ---------  -------  --------------  ---------  -----------  -----------  ------
           1    0.015           0.015   0.000013            -         1024  exact
           2    0.045           0.045   0.000013            -         1024  exact

 Mean per iteration: dirty 0.030 s (34133 written pages/sec), get log 0.000013 s
 verified: all 1024 of 1024 pages hold what was written
";
        assert_eq!(dirty_log(&r, PLAIN), want);
    }
}
