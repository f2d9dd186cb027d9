//! Checks of flag values several subcommands share, so that they accept the same forms and
//! refuse bad values with the same words, before any work starts.

use std::time::Duration;

/// `-i/--interval SECS`: at least 10 ms (shorter intervals would report the cost of reading
/// the statistics more than the statistics).
pub fn interval(secs: f64) -> anyhow::Result<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(every) if every >= Duration::from_millis(10) => Ok(every),
        _ => anyhow::bail!("--interval must be at least 0.01 seconds (got {secs})"),
    }
}

/// `--duration SECS`: a non-negative number of seconds.
pub fn duration(secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        anyhow::anyhow!("--duration must be a non-negative number of seconds (got {secs})")
    })
}
