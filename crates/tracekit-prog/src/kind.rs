//! Program types: what the kernel's test run does with each, and what its return value means.

use aya_obj::ProgramSection;
use serde::{Serialize, Serializer};

/// The type of a BPF program, as far as a test run is concerned. Serialised as its
/// [`name`](ProgKind::name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgKind {
    /// `SEC("xdp")`: retval is an `XDP_*` action, data is an Ethernet frame.
    Xdp,
    /// `SEC("classifier")` (TC): retval is a `TC_ACT_*` action, data is an Ethernet frame.
    SchedCls,
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
    /// Any other type (kprobe, tracepoint, ...): the kernel has no test run for most of them.
    Other(String),
}

/// Every return value a verdict name can stand for (the named ones are small, plus
/// `TC_ACT_UNSPEC` = -1).
fn named_retvals() -> impl Iterator<Item = u32> {
    (0..16).chain([u32::MAX])
}

impl ProgKind {
    /// The kind of the program in an ELF section such as `xdp`, `classifier` or `raw_tp/sys_enter`.
    pub fn from_section(section: &str) -> ProgKind {
        if section == "syscall" {
            return ProgKind::Syscall;
        }
        match section.parse::<ProgramSection>() {
            Ok(ProgramSection::Xdp { .. }) => ProgKind::Xdp,
            Ok(ProgramSection::SchedClassifier) => ProgKind::SchedCls,
            Ok(ProgramSection::SocketFilter) => ProgKind::SocketFilter,
            Ok(ProgramSection::FlowDissector) => ProgKind::FlowDissector,
            Ok(ProgramSection::RawTracePoint) => ProgKind::RawTracepoint,
            Ok(ProgramSection::CgroupSkb { .. }) => ProgKind::CgroupSkb,
            Ok(ProgramSection::SkLookup) => ProgKind::SkLookup,
            Ok(other) => ProgKind::Other(aya_name(&other)),
            Err(_) => ProgKind::Other(format!("unknown section '{section}'")),
        }
    }

    /// The short name users know (bpftool's type names).
    pub fn name(&self) -> &str {
        match self {
            ProgKind::Xdp => "xdp",
            ProgKind::SchedCls => "sched_cls",
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
                | ProgKind::SocketFilter
                | ProgKind::FlowDissector
                | ProgKind::CgroupSkb
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
            ProgKind::SchedCls if retval == u32::MAX => "TC_ACT_UNSPEC".to_owned(),
            ProgKind::SchedCls if idx < TC.len() => TC[idx].to_owned(),
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

fn aya_name(section: &ProgramSection) -> String {
    // The Debug form is e.g. `TracePoint` or `KProbe`; keep the variant name only.
    let debug = format!("{section:?}");
    let name = debug.split([' ', '{', '(']).next().unwrap_or(&debug);
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_map_to_kinds() {
        assert_eq!(ProgKind::from_section("xdp"), ProgKind::Xdp);
        assert_eq!(ProgKind::from_section("classifier"), ProgKind::SchedCls);
        assert_eq!(ProgKind::from_section("socket"), ProgKind::SocketFilter);
        assert_eq!(
            ProgKind::from_section("raw_tp/sys_enter"),
            ProgKind::RawTracepoint
        );
        assert_eq!(ProgKind::from_section("syscall"), ProgKind::Syscall);
        assert_eq!(
            ProgKind::from_section("tracepoint/syscalls/sys_enter_getpid"),
            ProgKind::Other("tracepoint".into())
        );
    }

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
    }
}
