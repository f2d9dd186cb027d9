//! The text reports of both tests, laid out as `tracekit bench` prints them. The JSON documents
//! are the reports themselves ([`DemandPagingReport`] and [`DirtyLogReport`] derive `Serialize`),
//! so a caller writes them with any serde writer.

use crate::demand::DemandPagingReport;
use crate::dirty::DirtyLogReport;
use crate::options::Engine;
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::units::human_bytes;

/// The demand-paging report: a heading, a row per vCPU and the total, userfaultfd's copy
/// statistics when it served the faults, and whether every page held what was written.
pub fn demand_paging(r: &DemandPagingReport, style: Style) -> String {
    let mut out = demand_paging_heading(r);
    let mut table = Table::new(vec![
        Column::right("vcpu"),
        Column::right("cpu"),
        Column::right("pages"),
        Column::right("seconds"),
        Column::right("pages/sec"),
    ]);
    for (i, secs) in r.vcpu_seconds.iter().enumerate() {
        let cpu = r.cpus.as_ref().map_or("-".to_owned(), |c| c[i].to_string());
        table.row(vec![
            i.to_string(),
            cpu,
            r.pages_per_vcpu.to_string(),
            format!("{secs:.3}"),
            rate(r.pages_per_vcpu, *secs),
        ]);
    }
    table.row(vec![
        "total".into(),
        String::new(),
        r.total_pages.to_string(),
        format!("{:.3}", r.total_seconds),
        format!("{:.0}", r.pages_per_sec),
    ]);
    out += &table.render(style);
    out.push('\n');
    if let Some(u) = &r.uffd {
        out += &format!(
            " userfaultfd: {} UFFDIO_COPY ({} already present), mean {:.1} us, max {:.1} us\n",
            u.copies,
            u.already_present,
            u.copy_mean_ns / 1e3,
            u.copy_max_ns as f64 / 1e3
        );
    }
    out += &verified_line(
        r.verified,
        r.verification.pages_checked,
        r.total_pages,
        style,
    );
    out
}

/// Who touched the memory, how the faults were served, and where the guest put it.
fn demand_paging_heading(r: &DemandPagingReport) -> String {
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
    if let (Some(mode), Some(gpa)) = (r.guest_mode, r.test_gpa) {
        out += &format!(
            " Guest: {mode}; test memory at GPA {gpa:#x}, GVA {:#x}\n",
            r.test_gva
        );
    }
    out.push('\n');
    out
}

/// The dirty-log report: a heading, the populate and logging on/off times, a row per
/// iteration, the means, and whether every page held its last write.
pub fn dirty_log(r: &DirtyLogReport, style: Style) -> String {
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

/// Who dirtied the memory, how the log was collected, and the times around the iterations.
fn dirty_log_heading(r: &DirtyLogReport) -> String {
    let l = &r.layout;
    let (who, collect) = match (r.engine, r.manual_protect) {
        (Engine::Host, _) => ("host threads (--no-kvm)", "no log to collect"),
        (Engine::Kvm, true) => (
            "vCPUs",
            "collecting with KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG",
        ),
        (Engine::Kvm, false) => ("vCPUs", "collecting with KVM_GET_DIRTY_LOG"),
    };
    let mut out = format!(
        "\n Dirty logging: {} {who} x {} ({} pages each), {} memory, writing 1 page in {}, {collect}\n",
        l.vcpus,
        human_bytes(l.bytes_per_vcpu),
        l.pages_per_vcpu,
        r.backing.name(),
        r.wr_fract,
    );
    if let Some(mode) = r.guest_mode {
        out += &format!(" Guest: {mode}\n");
    }
    out += &format!(
        "\n Populate memory: {:.3} s   enable dirty logging: {} s   disable: {} s\n\n",
        r.populate_seconds,
        seconds(r.enable_seconds),
        seconds(r.disable_seconds)
    );
    out
}

/// The mean iteration's costs, or nothing when there were no iterations to average.
fn dirty_log_means(r: &DirtyLogReport) -> String {
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
