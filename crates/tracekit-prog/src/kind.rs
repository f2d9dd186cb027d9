//! Program types: what the kernel's test run does with each, and what its return value means.

use aya_obj::generated::bpf_prog_type as P;
use serde::{Serialize, Serializer};

/// The type of a BPF program, as far as a test run is concerned. Serialised as its
/// [`name`](ProgKind::name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgKind {
    /// `SEC("xdp")`: retval is an `XDP_*` action, data is an Ethernet frame.
    Xdp,
    /// `SEC("tc")`, `SEC("classifier")`, `tcx/*`, `netkit/*`: retval is a `TC_ACT_*` action,
    /// data is an Ethernet frame.
    SchedCls,
    /// `SEC("action")` (TC action): as `SchedCls`.
    SchedAct,
    /// `SEC("lwt_in")`: lightweight tunnel input; retval is `BPF_OK`/`BPF_DROP`/...,
    /// the program sees the packet from the network header on.
    LwtIn,
    /// `SEC("lwt_out")`, as `LwtIn`.
    LwtOut,
    /// `SEC("lwt_xmit")`, as `LwtIn` (may also return `BPF_REDIRECT`).
    LwtXmit,
    /// `SEC("lwt_seg6local")`, as `LwtIn`.
    LwtSeg6local,
    /// `SEC("socket")`: retval is the number of bytes to keep (0 drops); the program sees
    /// the packet from the network header on.
    SocketFilter,
    /// `SEC("flow_dissector")`: retval is `BPF_OK`/`BPF_DROP`, data out is `struct bpf_flow_keys`.
    FlowDissector,
    /// `SEC("raw_tp/...")`: the context is the array of u64 tracepoint arguments; no data,
    /// no repeat, no duration.
    RawTracepoint,
    /// `SEC("cgroup_skb/...")`: retval bit 0 is allow (1) or drop (0).
    CgroupSkb,
    /// `SEC("sk_lookup")`: retval is `SK_PASS`/`SK_DROP`.
    SkLookup,
    /// `SEC("syscall")`: sleepable, the context is a user buffer copied in and back out.
    Syscall,
    /// Any other type (kprobe, tracepoint, ...), by bpftool's name for it, or why the section
    /// has no type: tracekit test-runs none of them.
    Other(String),
}

/// How [`ProgKind::from_section`] names a section libbpf does not know.
pub(crate) const UNKNOWN_SECTION: &str = "unknown section";

/// Every return value a verdict name can stand for (the named ones are small, plus
/// `TC_ACT_UNSPEC` = -1).
fn named_retvals() -> impl Iterator<Item = u32> {
    (0..16).chain([128, u32::MAX])
}

impl ProgKind {
    /// Whether the section name was not one libbpf knows (the type is unknown).
    pub fn is_unknown_section(&self) -> bool {
        matches!(self, ProgKind::Other(what) if what.starts_with(UNKNOWN_SECTION))
    }

    /// The kind of a `BPF_PROG_TYPE_*`.
    pub(crate) fn from_prog_type(prog_type: P) -> ProgKind {
        match prog_type {
            P::BPF_PROG_TYPE_XDP => ProgKind::Xdp,
            P::BPF_PROG_TYPE_SCHED_CLS => ProgKind::SchedCls,
            P::BPF_PROG_TYPE_SCHED_ACT => ProgKind::SchedAct,
            P::BPF_PROG_TYPE_SOCKET_FILTER => ProgKind::SocketFilter,
            P::BPF_PROG_TYPE_FLOW_DISSECTOR => ProgKind::FlowDissector,
            P::BPF_PROG_TYPE_RAW_TRACEPOINT => ProgKind::RawTracepoint,
            P::BPF_PROG_TYPE_CGROUP_SKB => ProgKind::CgroupSkb,
            P::BPF_PROG_TYPE_SK_LOOKUP => ProgKind::SkLookup,
            P::BPF_PROG_TYPE_SYSCALL => ProgKind::Syscall,
            P::BPF_PROG_TYPE_LWT_IN => ProgKind::LwtIn,
            P::BPF_PROG_TYPE_LWT_OUT => ProgKind::LwtOut,
            P::BPF_PROG_TYPE_LWT_XMIT => ProgKind::LwtXmit,
            P::BPF_PROG_TYPE_LWT_SEG6LOCAL => ProgKind::LwtSeg6local,
            other => ProgKind::Other(bpftool_name(other).to_owned()),
        }
    }

    /// The short name users know (bpftool's type names).
    pub fn name(&self) -> &str {
        match self {
            ProgKind::Xdp => "xdp",
            ProgKind::SchedCls => "sched_cls",
            ProgKind::SchedAct => "sched_act",
            ProgKind::LwtIn => "lwt_in",
            ProgKind::LwtOut => "lwt_out",
            ProgKind::LwtXmit => "lwt_xmit",
            ProgKind::LwtSeg6local => "lwt_seg6local",
            ProgKind::SocketFilter => "socket_filter",
            ProgKind::FlowDissector => "flow_dissector",
            ProgKind::RawTracepoint => "raw_tracepoint",
            ProgKind::CgroupSkb => "cgroup_skb",
            ProgKind::SkLookup => "sk_lookup",
            ProgKind::Syscall => "syscall",
            ProgKind::Other(name) => name,
        }
    }

    /// Whether the kernel has a test run for this type (the answer for `Other` is "no" for
    /// every type tracekit can load; the kernel's ENOTSUPP is reported when it says so).
    pub fn test_run_supported(&self) -> bool {
        !matches!(self, ProgKind::Other(_))
    }

    /// Whether the test run takes a packet (and so needs at least an Ethernet header).
    pub fn takes_packet(&self) -> bool {
        matches!(
            self,
            ProgKind::Xdp
                | ProgKind::SchedCls
                | ProgKind::SchedAct
                | ProgKind::SocketFilter
                | ProgKind::FlowDissector
                | ProgKind::CgroupSkb
        ) || self.is_lwt()
    }

    fn is_lwt(&self) -> bool {
        matches!(
            self,
            ProgKind::LwtIn | ProgKind::LwtOut | ProgKind::LwtXmit | ProgKind::LwtSeg6local
        )
    }

    /// Whether the kernel rejects `repeat`, data and a separate context output for this type
    /// (raw tracepoints and syscall programs run once on a context only, untimed).
    pub fn context_only(&self) -> bool {
        matches!(self, ProgKind::RawTracepoint | ProgKind::Syscall)
    }

    /// The name of a return value for this program type, e.g. `XDP_DROP`, `TC_ACT_SHOT`.
    pub fn verdict(&self, retval: u32) -> String {
        const XDP: [&str; 5] = [
            "XDP_ABORTED",
            "XDP_DROP",
            "XDP_PASS",
            "XDP_TX",
            "XDP_REDIRECT",
        ];
        const TC: [&str; 9] = [
            "TC_ACT_OK",
            "TC_ACT_RECLASSIFY",
            "TC_ACT_SHOT",
            "TC_ACT_PIPE",
            "TC_ACT_STOLEN",
            "TC_ACT_QUEUED",
            "TC_ACT_REPEAT",
            "TC_ACT_REDIRECT",
            "TC_ACT_TRAP",
        ];
        let idx = retval as usize;
        match self {
            ProgKind::Xdp if idx < XDP.len() => XDP[idx].to_owned(),
            ProgKind::SchedCls | ProgKind::SchedAct if retval == u32::MAX => {
                "TC_ACT_UNSPEC".to_owned()
            }
            ProgKind::SchedCls | ProgKind::SchedAct if idx < TC.len() => TC[idx].to_owned(),
            kind if kind.is_lwt() => match retval {
                0 => "BPF_OK".to_owned(),
                2 => "BPF_DROP".to_owned(),
                7 => "BPF_REDIRECT".to_owned(),
                128 => "BPF_LWT_REROUTE".to_owned(),
                _ => retval.to_string(),
            },
            ProgKind::SocketFilter if retval == 0 => "DROP".to_owned(),
            ProgKind::SocketFilter => format!("KEEP {retval} bytes"),
            ProgKind::FlowDissector if retval == 0 => "BPF_OK".to_owned(),
            ProgKind::FlowDissector if retval == 2 => "BPF_DROP".to_owned(),
            ProgKind::CgroupSkb if retval & 1 == 1 => "ALLOW".to_owned(),
            ProgKind::CgroupSkb => "DROP".to_owned(),
            ProgKind::SkLookup if retval == 0 => "SK_DROP".to_owned(),
            ProgKind::SkLookup if retval == 1 => "SK_PASS".to_owned(),
            _ => retval.to_string(),
        }
    }

    /// The verdict names [`ProgKind::parse_verdict`] accepts for this type (empty when its
    /// return values have no names).
    pub fn verdict_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for v in named_retvals().map(|r| self.verdict(r)) {
            if v.parse::<i64>().is_err() && !v.contains(' ') && !names.contains(&v) {
                names.push(v);
            }
        }
        names
    }

    /// The return value for a verdict name (the inverse of [`ProgKind::verdict`]), or a number.
    pub fn parse_verdict(&self, name: &str) -> Option<u32> {
        if let Ok(n) = name.parse::<u32>() {
            return Some(n);
        }
        if let Ok(n) = name.parse::<i32>() {
            return Some(n as u32);
        }
        named_retvals().find(|&r| self.verdict(r).eq_ignore_ascii_case(name))
    }
}

impl Serialize for ProgKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for ProgKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// bpftool's name of a program type (`bpftool prog show` prints these).
fn bpftool_name(prog_type: P) -> &'static str {
    match prog_type {
        P::BPF_PROG_TYPE_KPROBE => "kprobe",
        P::BPF_PROG_TYPE_TRACEPOINT => "tracepoint",
        P::BPF_PROG_TYPE_PERF_EVENT => "perf_event",
        P::BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE => "raw_tracepoint_writable",
        P::BPF_PROG_TYPE_SOCK_OPS => "sock_ops",
        P::BPF_PROG_TYPE_SK_SKB => "sk_skb",
        P::BPF_PROG_TYPE_SK_MSG => "sk_msg",
        P::BPF_PROG_TYPE_CGROUP_DEVICE => "cgroup_device",
        P::BPF_PROG_TYPE_CGROUP_SOCK => "cgroup_sock",
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR => "cgroup_sock_addr",
        P::BPF_PROG_TYPE_CGROUP_SYSCTL => "cgroup_sysctl",
        P::BPF_PROG_TYPE_CGROUP_SOCKOPT => "cgroup_sockopt",
        P::BPF_PROG_TYPE_LIRC_MODE2 => "lirc_mode2",
        P::BPF_PROG_TYPE_SK_REUSEPORT => "sk_reuseport",
        P::BPF_PROG_TYPE_TRACING => "tracing",
        P::BPF_PROG_TYPE_STRUCT_OPS => "struct_ops",
        P::BPF_PROG_TYPE_EXT => "ext",
        P::BPF_PROG_TYPE_LSM => "lsm",
        P::BPF_PROG_TYPE_NETFILTER => "netfilter",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip() {
        assert_eq!(ProgKind::Xdp.verdict(1), "XDP_DROP");
        assert_eq!(ProgKind::SchedCls.verdict(2), "TC_ACT_SHOT");
        assert_eq!(ProgKind::SchedCls.verdict(u32::MAX), "TC_ACT_UNSPEC");
        assert_eq!(ProgKind::Xdp.parse_verdict("xdp_pass"), Some(2));
        assert_eq!(
            ProgKind::SchedCls.parse_verdict("TC_ACT_UNSPEC"),
            Some(u32::MAX)
        );
        assert_eq!(ProgKind::SocketFilter.parse_verdict("DROP"), Some(0));
        assert_eq!(ProgKind::Xdp.parse_verdict("XDP_NOPE"), None);
        assert_eq!(ProgKind::LwtXmit.verdict(7), "BPF_REDIRECT");
        assert_eq!(ProgKind::LwtIn.parse_verdict("BPF_LWT_REROUTE"), Some(128));
        assert_eq!(ProgKind::SchedAct.verdict(2), "TC_ACT_SHOT");
    }
}
