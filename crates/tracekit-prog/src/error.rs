//! Errors of loading and test-running programs; each message says what to do next.

use std::path::PathBuf;

/// Why a BPF object could not be loaded or a program could not be test-run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object file could not be read.
    #[error("cannot read BPF object {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not an ELF object.
    #[error(
        "{what} is not an ELF file; pass a BPF object compiled with `clang -O2 -g -target bpf -c prog.bpf.c`"
    )]
    NotElf {
        /// The file (or "the data").
        what: String,
    },
    /// The ELF object could not be parsed as a BPF object.
    #[error("cannot parse BPF object {what}: {reason}")]
    Parse {
        /// The file.
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// No program of that name in the object.
    #[error(
        "no program named '{name}' in {what}; its programs are: {available} (see `tracekit prog list`)"
    )]
    NoSuchProgram {
        /// The name asked for.
        name: String,
        /// The object.
        what: String,
        /// The names there are.
        available: String,
    },
    /// The loader has no way to load programs of this type without attaching them.
    #[error(
        "cannot load '{name}': tracekit loads {kind} programs only to attach them, and the kernel has no test run for them; test-run works for xdp, classifier, socket, flow_dissector, raw_tp, cgroup_skb, sk_lookup and syscall programs"
    )]
    CannotLoad {
        /// The program.
        name: String,
        /// Its type.
        kind: String,
    },
    /// The kernel (verifier) refused the program.
    #[error("the kernel refused to load '{name}': {reason}")]
    Load {
        /// The program.
        name: String,
        /// The loader's message with the verifier log.
        reason: String,
    },
    /// The kernel has no test run for this program type (ENOTSUPP).
    #[error(
        "the kernel cannot test-run {kind} programs ('{name}' returned ENOTSUPP); test-run works for xdp, sched_cls, socket_filter, flow_dissector, raw_tracepoint, cgroup_skb, sk_lookup and syscall programs"
    )]
    NotSupported {
        /// The program.
        name: String,
        /// Its type.
        kind: String,
    },
    /// An output buffer was too small (ENOSPC); the kernel reported the size it needed.
    #[error(
        "the program's {what} is {needed} bytes but the buffer given was {given} bytes (ENOSPC); give a buffer of at least {needed} bytes, or leave the size unset to let tracekit size it"
    )]
    NoSpace {
        /// `data_out` or `ctx_out`.
        what: &'static str,
        /// The size the kernel wanted to write.
        needed: u32,
        /// The size of the buffer given.
        given: u32,
    },
    /// The input does not fit what the kernel accepts for this program type.
    #[error("cannot test-run '{name}' ({kind}): {reason}")]
    BadInput {
        /// The program.
        name: String,
        /// Its type.
        kind: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Any other failure of the test-run system call.
    #[error("BPF_PROG_TEST_RUN of '{name}' ({kind}) failed with {errno}: {error}")]
    TestRun {
        /// The program.
        name: String,
        /// Its type.
        kind: String,
        /// The errno name.
        errno: String,
        /// The error.
        error: std::io::Error,
    },
    /// A capture file could not be read.
    #[error("cannot read capture {path}: {reason}")]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A test-vector file could not be read or is malformed.
    #[error("bad test-vector file {path}: {reason}")]
    Vectors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A packet description or hex string is malformed.
    #[error("bad packet: {0}")]
    Packet(String),
}
