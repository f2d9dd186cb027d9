//! Unit-test and benchmark BPF programs on the real kernel with `BPF_PROG_TEST_RUN`.
//!
//! The kernel can run a loaded program on data and context supplied from user space, repeat
//! it N times and report the mean duration per run. This crate makes that one call:
//!
//! ```no_run
//! use tracekit_prog::{BpfObject, RunOptions};
//!
//! let obj = BpfObject::from_file("bpf/obj/xdp_port_filter.bpf.o")?;
//! let prog = obj.load("xdp_port_filter")?;
//! let packet = tracekit_prog::packet::PacketSpec::udp(1234, 9999).build()?;
//! let out = prog.run(&RunOptions { data_in: &packet, repeat: 1000, ..Default::default() })?;
//! assert_eq!(prog.verdict(out.retval), "XDP_DROP");
//! println!("{} ns per run", out.duration.unwrap().as_nanos());
//! # Ok::<(), tracekit_prog::Error>(())
//! ```
//!
//! - [`BpfObject`] reads an ELF object from clang and lists its programs; [`BpfObject::load`]
//!   loads one program into the kernel without attaching it anywhere.
//! - [`Program::run`] is one test run: retval, data out, context out, duration. Output
//!   buffers are sized for the program; a buffer the caller sized too small is
//!   [`Error::NoSpace`] with the size the kernel needed.
//! - [`Program::benchmark`] runs K batches of N repeats and gives order statistics of the
//!   duration per run, plus the cold first call and the wall time per call.
//! - [`pcap`] replays a capture through a program; [`vectors`] runs a TOML suite of cases
//!   (from the CLI or from `cargo test`); [`packet`] builds test packets from fields.
#![deny(missing_docs)]

mod btf;
mod core_fixups;
mod core_relo;
mod error;
mod externs;
pub mod hex;
mod init_values;
mod kconfig;
mod kernel;
mod kind;
mod loader;
mod maps;
mod object;
pub mod packet;
pub mod pcap;
mod rename;
pub mod render;
mod run;
mod section;
mod struct_ops;
mod sys;
pub mod vectors;

pub use error::Error;
pub use kernel::KernelProgram;
pub use kind::ProgKind;
pub use maps::{MapDump, MapEntry};
pub use object::{BpfObject, ProgramEntry};
pub use render::{ReplayReport, RunReport};
pub use run::{
    Benchmark, LIVE_FRAMES, Program, RunOptions, RunOutcome, interface_index, xdp_md_context,
};
pub use section::SectionType;
