//! Report output: aligned text tables in the style of `perf trace -s`, JSON documents, and
//! the destination they go to (standard output or `-o FILE`), with colour only on a terminal.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns (names).
    Left,
    /// Number columns.
    Right,
}

/// A column of a [`Table`]: its header and alignment.
#[derive(Debug, Clone)]
pub struct Column {
    header: String,
    align: Align,
}

impl Column {
    /// A left-aligned column.
    pub fn left(header: impl Into<String>) -> Self {
        Column {
            header: header.into(),
            align: Align::Left,
        }
    }

    /// A right-aligned column.
    pub fn right(header: impl Into<String>) -> Self {
        Column {
            header: header.into(),
            align: Align::Right,
        }
    }
}

/// A text table whose columns are sized to their widest cell, with a header line and a
/// dashed rule under it, indented like perf's summary tables.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with the given columns and no rows, indented by three spaces.
    pub fn new(columns: Vec<Column>) -> Self {
        Table {
            columns,
            rows: Vec::new(),
            indent: 3,
        }
    }

    /// Sets the number of spaces before each line.
    pub fn indent(mut self, spaces: usize) -> Self {
        self.indent = spaces;
        self
    }

    /// Appends a row; missing cells are empty, extra cells are an error of the caller.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert!(cells.len() <= self.columns.len(), "more cells than columns");
        self.rows.push(cells);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table; with `style.colour` the header is bold.
    pub fn render(&self, style: Style) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cells = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|s| s.chars().count());
                cells.chain([c.header.chars().count()]).max().unwrap_or(0)
            })
            .collect();
        let pad = " ".repeat(self.indent);
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let parts: Vec<String> = self
                .columns
                .iter()
                .zip(&widths)
                .map(|(col, &w)| {
                    let cell = cells.next().unwrap_or("");
                    match col.align {
                        Align::Left => format!("{cell:<w$}"),
                        Align::Right => format!("{cell:>w$}"),
                    }
                })
                .collect();
            format!("{pad}{}", parts.join("  ").trim_end())
        };
        let header = line(&mut self.columns.iter().map(|c| c.header.as_str()));
        let rule = line(
            &mut widths
                .iter()
                .map(|&w| "-".repeat(w))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        );
        let mut out = format!("{}\n{}\n", style.bold(&header), rule);
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
            out.push('\n');
        }
        out
    }
}

/// Text styling decisions for a report: colour only when writing to a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Whether ANSI colour/bold sequences are written.
    pub colour: bool,
}

impl Style {
    /// Bold text when colour is on.
    pub fn bold(self, s: &str) -> String {
        if self.colour {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Red text when colour is on (errors, failures).
    pub fn red(self, s: &str) -> String {
        if self.colour {
            format!("\x1b[31m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Green text when colour is on (passes).
    pub fn green(self, s: &str) -> String {
        if self.colour {
            format!("\x1b[32m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Yellow text when colour is on (warnings, changed bytes).
    pub fn yellow(self, s: &str) -> String {
        if self.colour {
            format!("\x1b[33m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

/// Where a report goes: standard output, or the file named by `-o/--output`.
#[derive(Debug, Clone, Default)]
pub struct OutputTarget {
    path: Option<PathBuf>,
    stderr: bool,
}

impl OutputTarget {
    /// Standard output when `path` is `None` or `-`, otherwise the file.
    pub fn new(path: Option<&Path>) -> Self {
        OutputTarget {
            path: path.filter(|p| p.as_os_str() != "-").map(Path::to_path_buf),
            stderr: false,
        }
    }

    /// Like [`OutputTarget::new`], but standard error instead of standard output when no file
    /// is given: for tools that run a command whose own output must stay untouched (as
    /// `strace -c` and `perf trace` do). `-` still means standard output, for pipes.
    pub fn new_or_stderr(path: Option<&Path>) -> Self {
        let dash = path.is_some_and(|p| p.as_os_str() == "-");
        OutputTarget {
            stderr: !dash,
            ..Self::new(path)
        }
    }

    /// Creates (truncates) the output file now, so that a bad path is reported before a long
    /// run rather than after it, when the data would be lost. Nothing to do for a stream.
    pub fn prepare(&self) -> io::Result<()> {
        match &self.path {
            Some(p) => File::create(p).map(drop).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot write report to {}: {e}", p.display()),
                )
            }),
            None => Ok(()),
        }
    }

    /// The style for this destination: colour only for a terminal on standard output, and
    /// never when `NO_COLOR` is set.
    pub fn style(&self) -> Style {
        let terminal = if self.stderr {
            io::stderr().is_terminal()
        } else {
            io::stdout().is_terminal()
        };
        let colour = self.path.is_none()
            && terminal
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Style { colour }
    }

    /// Writes the whole report at once (creating or truncating the file).
    pub fn write(&self, text: &str) -> io::Result<()> {
        match &self.path {
            None if self.stderr => io::stderr().lock().write_all(text.as_bytes()),
            None => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()
            }
            Some(p) => File::create(p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot write report to {}: {e}", p.display()),
                    )
                }),
        }
    }

    /// Adds one report of a series (one interval) after the ones before it: a file made by
    /// [`OutputTarget::prepare`] is appended to, a stream written and flushed.
    pub fn append(&self, text: &str) -> io::Result<()> {
        match &self.path {
            None => self.write(text),
            Some(p) => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot write report to {}: {e}", p.display()),
                    )
                }),
        }
    }

    /// Appends `value` as one line of JSON (NDJSON: one document per line).
    pub fn append_json_line<T: serde::Serialize>(&self, value: &T) -> io::Result<()> {
        let mut text = serde_json::to_string(value).map_err(io::Error::other)?;
        text.push('\n');
        self.append(&text)
    }

    /// Serialises `value` as pretty JSON (with a final newline) and writes it.
    pub fn write_json<T: serde::Serialize>(&self, value: &T) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        text.push('\n');
        self.write(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut t = Table::new(vec![Column::left("syscall"), Column::right("calls")]);
        t.row(vec!["getppid".into(), "1000".into()]);
        t.row(vec!["read".into(), "7".into()]);
        let text = t.render(Style::default());
        assert_eq!(
            text,
            "   syscall  calls\n   -------  -----\n   getppid   1000\n   read         7\n"
        );
    }

    #[test]
    fn file_output_has_no_colour_and_writes() {
        let path = std::env::temp_dir().join(format!("tracekit-core-{}.txt", std::process::id()));
        let target = OutputTarget::new(Some(&path));
        assert!(!target.style().colour);
        target.write("hello\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n");
        std::fs::remove_file(path).unwrap();
    }
}
