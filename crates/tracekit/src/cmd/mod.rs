//! One module per subcommand: its clap arguments and the function that runs it.

pub mod bench;
pub mod exporter;
pub mod probe;
pub mod prog;
pub mod trace;
