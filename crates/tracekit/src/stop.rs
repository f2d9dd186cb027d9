//! Ctrl-C and SIGTERM end a run gracefully: the first one sets a flag that the running
//! command polls (it then prints its report and detaches everything); a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A flag set by the first SIGINT or SIGTERM. Installing it again returns a new flag.
/// A second signal exits at once (status 128 + signal), without a report.
pub fn flag() -> anyhow::Result<Arc<AtomicBool>> {
    install(true)
}

/// Like [`flag`], but further signals are ignored: for runs that must finish their clean-up
/// (restoring patched instructions in a tracee) whatever the user presses.
pub fn flag_without_escape() -> anyhow::Result<Arc<AtomicBool>> {
    install(false)
}

fn install(escape: bool) -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if escape {
            // Order matters: the conditional shutdown sees the flag before this signal sets it.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))?;
        }
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    Ok(stop)
}
