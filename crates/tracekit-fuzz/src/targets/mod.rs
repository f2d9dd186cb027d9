//! Every fuzz target, one per parser of outside data.

mod gdb;
mod probe;
mod prog;
mod summary;

use crate::Target;

/// All targets, in the order runs list them.
pub fn all() -> Vec<Target> {
    let mut all = prog::targets();
    all.extend(probe::targets());
    all.push(gdb::target());
    all.extend(summary::targets());
    all
}
