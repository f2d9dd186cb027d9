//! `trace top`: a live full-screen view of the syscalls of the last interval, like top and
//! bpftop. Keys: `q`/Esc/Ctrl-C quit, `s` next sort key, `g` grouping (none, per process, per
//! cgroup), `p`/space pause. The terminal is restored however the view ends (a guard's `Drop`).
//!
//! The kernel side keys by cgroup and process both, with histograms; the view adds groups up
//! as the grouping asks, so it can change without reloading anything.

use crate::session::{Interval, Outcome, Target, run_with_intervals};
use crate::{Error, Mode, Options, Summary};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracekit_core::stats::Log2Histogram;

/// The columns rows can be sorted by, in the order `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopSort {
    /// Calls per second.
    Calls,
    /// Errors per second.
    Errors,
    /// Mean latency.
    Avg,
    /// Estimated p99 latency.
    P99,
}

impl TopSort {
    fn next(self) -> TopSort {
        match self {
            TopSort::Calls => TopSort::Errors,
            TopSort::Errors => TopSort::Avg,
            TopSort::Avg => TopSort::P99,
            TopSort::P99 => TopSort::Calls,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TopSort::Calls => "calls/s",
            TopSort::Errors => "errors/s",
            TopSort::Avg => "avg",
            TopSort::P99 => "p99",
        }
    }
}

/// How rows are grouped, in the order `g` cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One row per syscall.
    All,
    /// One row per process and syscall.
    Process,
    /// One row per cgroup and syscall.
    Cgroup,
}

impl Grouping {
    fn next(self) -> Grouping {
        match self {
            Grouping::All => Grouping::Process,
            Grouping::Process => Grouping::Cgroup,
            Grouping::Cgroup => Grouping::All,
        }
    }

    /// The group column's header, if any.
    fn column(self) -> Option<&'static str> {
        match self {
            Grouping::All => None,
            Grouping::Process => Some("process"),
            Grouping::Cgroup => Some("cgroup"),
        }
    }
}

/// What the keys change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    sort: TopSort,
    grouping: Grouping,
    paused: bool,
}

/// One line of the view: a syscall (of one process, when grouped) over the last interval.
#[derive(Debug, Clone, PartialEq)]
pub struct TopRow {
    /// `comm (pid)` or the cgroup's path, as grouped; empty for one row per syscall.
    pub group: String,
    /// The syscall.
    pub syscall: String,
    /// Calls per second.
    pub calls_per_sec: f64,
    /// Failed calls per second.
    pub errors_per_sec: f64,
    /// Mean latency in ns.
    pub avg_ns: f64,
    /// Estimated p99 latency in ns (from the log2 histogram).
    pub p99_ns: Option<f64>,
}

/// The rows of an interval summary (process-in-cgroup mode), grouped by `grouping`.
pub fn rows(interval: &Summary, grouping: Grouping, sort: TopSort) -> Vec<TopRow> {
    let secs = interval.elapsed.as_secs_f64().max(1e-9);
    // (process, syscall) -> (calls, errors, total ns, histogram)
    let mut merged: BTreeMap<(String, String), (u64, u64, u64, Log2Histogram)> = BTreeMap::new();
    for group in &interval.groups {
        let label = match (grouping, group.id) {
            (Grouping::Process, Some(pid)) => format!("{} ({pid})", group.comm),
            (Grouping::Cgroup, _) => group.cgroup.clone().unwrap_or_default(),
            _ => String::new(),
        };
        for row in &group.syscalls {
            let entry = merged.entry((label.clone(), row.name.clone())).or_default();
            entry.0 += row.stats.count;
            entry.1 += row.errors;
            entry.2 += row.stats.total;
            if let Some(hist) = &row.hist {
                entry.3.add_buckets(&hist.buckets);
            }
        }
    }
    let mut rows: Vec<TopRow> = merged
        .into_iter()
        .map(|((group, syscall), (calls, errors, total, hist))| TopRow {
            group,
            syscall,
            calls_per_sec: calls as f64 / secs,
            errors_per_sec: errors as f64 / secs,
            avg_ns: if calls == 0 {
                0.0
            } else {
                total as f64 / calls as f64
            },
            p99_ns: hist.percentile(0.99),
        })
        .collect();
    let key = |r: &TopRow| match sort {
        TopSort::Calls => r.calls_per_sec,
        TopSort::Errors => r.errors_per_sec,
        TopSort::Avg => r.avg_ns,
        TopSort::P99 => r.p99_ns.unwrap_or(0.0),
    };
    rows.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.syscall.cmp(&b.syscall))
    });
    rows
}

/// Puts the terminal back as it was, whatever ends the view.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

type Screen = ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>;

/// Runs the live view of `target` until it ends, `q`, or `stop` (SIGINT/SIGTERM); `every`
/// is the refresh interval. Standard output must be a terminal.
pub fn run(
    options: &Options,
    target: &Target,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Outcome, Error> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::NotATerminal);
    }
    let options = Options {
        mode: Mode::ProcessInCgroup,
        hist: true,
        latency: true,
        ..options.clone()
    };
    let tui_err = |e: std::io::Error| Error::Output(format!("terminal: {e}"));
    crossterm::terminal::enable_raw_mode().map_err(tui_err)?;
    let _guard = TerminalGuard;
    crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen)
        .map_err(tui_err)?;
    let mut screen =
        Screen::new(ratatui::backend::CrosstermBackend::new(std::io::stdout())).map_err(tui_err)?;
    let view = Arc::new(Mutex::new(View {
        sort: TopSort::Calls,
        grouping: Grouping::All,
        paused: false,
    }));
    let done = Arc::new(AtomicBool::new(false));
    let keys = spawn_key_reader(Arc::clone(&view), Arc::clone(&stop), Arc::clone(&done));
    let what = describe(target);
    draw(&mut screen, &what, None, *lock(&view)).map_err(tui_err)?;
    let mut last: Option<Summary> = None;
    let result = run_with_intervals(
        &options,
        target,
        None,
        Some(Interval { every, count: None }),
        &stop,
        &mut |interval| {
            let v = *lock(&view);
            if !v.paused {
                last = Some(interval.clone());
            }
            draw(&mut screen, &what, last.as_ref(), v).map_err(tui_err)
        },
    );
    done.store(true, Ordering::Relaxed);
    let _ = keys.join();
    result
}

fn lock(view: &Mutex<View>) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads keys until the view ends. In raw mode Ctrl-C is a key, not a signal.
fn spawn_key_reader(
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if !event::poll(Duration::from_millis(50)).unwrap_or(false) {
                continue;
            }
            let Ok(Event::Key(key)) = event::read() else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            let mut v = lock(&view);
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => stop.store(true, Ordering::Relaxed),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    stop.store(true, Ordering::Relaxed)
                }
                KeyCode::Char('s') => v.sort = v.sort.next(),
                KeyCode::Char('g') => v.grouping = v.grouping.next(),
                KeyCode::Char('p') | KeyCode::Char(' ') => v.paused = !v.paused,
                _ => {}
            }
        }
    })
}

/// The target in a few words: a command by its program's name and argument count.
fn describe(target: &Target) -> String {
    match target {
        Target::Command(argv) => {
            let program = std::path::Path::new(&argv[0])
                .file_name()
                .map_or_else(|| argv[0].to_string_lossy(), |n| n.to_string_lossy())
                .into_owned();
            match argv.len() - 1 {
                0 => program,
                n => format!("{program} (+{n} args)"),
            }
        }
        Target::Pids(pids) => format!("pid {pids:?}"),
        Target::Threads(tids) => format!("tid {tids:?}"),
        Target::All => "whole system".into(),
    }
}

/// Microseconds: the live view's unit (most syscalls take well under a millisecond).
fn us(ns: f64) -> String {
    format!("{:.3}", ns / 1e3)
}

fn draw(
    screen: &mut Screen,
    what: &str,
    interval: Option<&Summary>,
    view: View,
) -> std::io::Result<()> {
    let rows = interval.map_or_else(Vec::new, |s| rows(s, view.grouping, view.sort));
    let events: f64 = rows.iter().map(|r| r.calls_per_sec).sum();
    let title = format!(
        " tracekit top | sort: {}{} | interval {} | {events:.0} syscalls/s | {what} ",
        view.sort.name(),
        if view.paused { " | PAUSED" } else { "" },
        interval.and_then(|s| s.interval).unwrap_or(0),
    );
    let mut header = vec!["syscall", "calls/s", "errors/s", "avg(us)", "~p99(us)"];
    if let Some(column) = view.grouping.column() {
        header.insert(0, column);
    }
    let lines: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.syscall.clone(),
                format!("{:.0}", r.calls_per_sec),
                format!("{:.0}", r.errors_per_sec),
                us(r.avg_ns),
                r.p99_ns.map_or_else(|| "-".into(), us),
            ];
            if view.grouping != Grouping::All {
                cells.insert(0, r.group.clone());
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(24),
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    if view.grouping != Grouping::All {
        widths.insert(0, Constraint::Length(36));
    }
    let table = Table::new(lines, widths)
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(Block::default().borders(Borders::ALL).title(title));
    let help = Paragraph::new(" q quit   s sort   g group: none, process, cgroup   p pause");
    screen.draw(|frame| {
        let [body, footer] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
        frame.render_widget(table, body);
        frame.render_widget(help, footer);
    })?;
    Ok(())
}
