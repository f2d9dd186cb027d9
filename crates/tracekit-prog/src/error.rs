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
    /// The program's section name is not one libbpf knows, so its type is unknown.
    #[error(
        "cannot load '{name}': its section '{section}' is not a libbpf section name, so its program type is unknown; use one of xdp, tc, classifier, action, socket, lwt_in, lwt_out, lwt_xmit, lwt_seg6local, flow_dissector, cgroup_skb/ingress, sk_lookup, raw_tp/NAME, syscall, ... (libbpf's program_types list)"
    )]
    UnknownSection {
        /// The program.
        name: String,
        /// Its section.
        section: String,
    },
    /// Loading failed before the kernel saw the program (BTF, maps, relocations).
    #[error("cannot load '{name}': {reason}")]
    Load {
        /// The program.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The kernel (verifier) refused the program. The message gives the verifier's verdict
    /// and the last lines of its log; [`Error::verifier_log`] has all of it.
    #[error(
        "the kernel refused to load '{name}' ({errno}): {verdict}\nverifier log:\n{}",
        crate::loader::last_lines(log, 20)
    )]
    Refused {
        /// The program.
        name: String,
        /// The errno name of BPF_PROG_LOAD (`EACCES`, `EINVAL`, ...).
        errno: String,
        /// The verifier's reason: the last line of its log that is not a statistic.
        verdict: String,
        /// The verifier's whole log.
        log: String,
    },
    /// The kernel refused for lack of privilege (EPERM with no verifier log).
    #[error(
        "not permitted to load '{name}' (EPERM): loading a BPF program needs root, or CAP_BPF plus CAP_NET_ADMIN (network programs) or CAP_PERFMON (tracing programs); run tracekit with sudo"
    )]
    NotPermitted {
        /// The program.
        name: String,
    },
    /// The kernel has no test run for this program type (ENOTSUPP).
    #[error(
        "the kernel cannot test-run {kind} programs ('{name}' returned ENOTSUPP); test-run works for xdp, sched_cls, sched_act, socket_filter, lwt_*, flow_dissector, raw_tracepoint, cgroup_skb, sk_lookup and syscall programs"
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
    /// A map could not be filled or read.
    #[error("map '{name}': {reason}")]
    Map {
        /// The map.
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A program already in the kernel could not be opened.
    #[error("cannot open the loaded program {which}: {reason}")]
    Kernel {
        /// `id:N`, `pinned:PATH` or `name:NAME`.
        which: String,
        /// Why.
        reason: String,
    },
    /// A packet description or hex string is malformed.
    #[error("bad packet: {0}")]
    Packet(String),
    /// No network interface of that name in this network namespace.
    #[error("no interface '{0}' here (`ip link` lists them)")]
    NoInterface(String),
}

impl Error {
    /// The error in one line (a verifier refusal without its log).
    pub fn summary(&self) -> String {
        match self {
            Error::Refused {
                name,
                errno,
                verdict,
                ..
            } => format!("the kernel refused to load '{name}' ({errno}): {verdict}"),
            other => other
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The verifier's whole log, when the kernel refused a program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            Error::Refused { log, .. } => Some(log),
            _ => None,
        }
    }
}
