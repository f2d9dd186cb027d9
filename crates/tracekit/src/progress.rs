//! Progress bars for long runs: on a terminal (stderr) only, and only for runs of at least a
//! given number of steps, so scripts and short runs print nothing extra.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `total` steps named `unit` (`pages`, `batches`), with the rate when `rate` is set;
/// hidden when stderr is not a terminal or `total < min`.
pub fn bar(total: u64, min: u64, unit: &str, rate: bool) -> ProgressBar {
    if total < min || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let rate = if rate { " ({per_sec})" } else { "" };
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit}{rate}");
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
