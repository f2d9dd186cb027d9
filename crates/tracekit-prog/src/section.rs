//! libbpf's section names: what program type, expected attach type and load flags each one
//! stands for. The table follows libbpf's `section_defs` (libbpf.c), so an object that libbpf
//! loads has every program typed the same way here.

use crate::kind::{ProgKind, UNKNOWN_SECTION};
use aya_obj::generated::{bpf_attach_type as A, bpf_prog_type as P};

/// How a table entry matches a section name (libbpf's `sec_def_matches`).
#[derive(Clone, Copy)]
enum Pattern {
    /// `"xdp"`: the name exactly.
    Exact(&'static str),
    /// `"kprobe+"`: the name exactly, or followed by `/` and anything.
    Plus(&'static str),
}

impl Pattern {
    fn matches(self, section: &str) -> bool {
        match self {
            Pattern::Exact(name) => section == name,
            Pattern::Plus(name) => section
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

const NONE: u8 = 0;
const SLEEPABLE: u8 = 1;
const XDP_FRAGS: u8 = 2;
/// The attach target is a kernel BTF type named after the `/`.
const ATTACH_BTF: u8 = 4;

struct Def {
    pattern: Pattern,
    prog_type: P,
    attach_type: u32,
    flags: u8,
}

const fn def(pattern: Pattern, prog_type: P, attach_type: u32, flags: u8) -> Def {
    Def {
        pattern,
        prog_type,
        attach_type,
        flags,
    }
}

use Pattern::{Exact as E, Plus};

/// `BPF_TRACE_KPROBE_SESSION`, newer than aya-obj's bindings.
const TRACE_KPROBE_SESSION: u32 = 56;

/// libbpf's table, in its order (the first match wins).
const DEFS: &[Def] = &[
    def(E("socket"), P::BPF_PROG_TYPE_SOCKET_FILTER, 0, NONE),
    def(
        E("sk_reuseport/migrate"),
        P::BPF_PROG_TYPE_SK_REUSEPORT,
        A::BPF_SK_REUSEPORT_SELECT_OR_MIGRATE as u32,
        NONE,
    ),
    def(
        E("sk_reuseport"),
        P::BPF_PROG_TYPE_SK_REUSEPORT,
        A::BPF_SK_REUSEPORT_SELECT as u32,
        NONE,
    ),
    def(Plus("kprobe"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("uprobe"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("uprobe.s"), P::BPF_PROG_TYPE_KPROBE, 0, SLEEPABLE),
    def(Plus("kretprobe"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("uretprobe"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("uretprobe.s"), P::BPF_PROG_TYPE_KPROBE, 0, SLEEPABLE),
    def(
        Plus("kprobe.multi"),
        P::BPF_PROG_TYPE_KPROBE,
        A::BPF_TRACE_KPROBE_MULTI as u32,
        NONE,
    ),
    def(
        Plus("kretprobe.multi"),
        P::BPF_PROG_TYPE_KPROBE,
        A::BPF_TRACE_KPROBE_MULTI as u32,
        NONE,
    ),
    def(
        Plus("kprobe.session"),
        P::BPF_PROG_TYPE_KPROBE,
        TRACE_KPROBE_SESSION,
        NONE,
    ),
    def(
        Plus("uprobe.multi"),
        P::BPF_PROG_TYPE_KPROBE,
        A::BPF_TRACE_UPROBE_MULTI as u32,
        NONE,
    ),
    def(
        Plus("uretprobe.multi"),
        P::BPF_PROG_TYPE_KPROBE,
        A::BPF_TRACE_UPROBE_MULTI as u32,
        NONE,
    ),
    def(
        Plus("uprobe.multi.s"),
        P::BPF_PROG_TYPE_KPROBE,
        A::BPF_TRACE_UPROBE_MULTI as u32,
        SLEEPABLE,
    ),
    def(
        Plus("uretprobe.multi.s"),
        P::BPF_PROG_TYPE_KPROBE,
        A::BPF_TRACE_UPROBE_MULTI as u32,
        SLEEPABLE,
    ),
    def(Plus("ksyscall"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("kretsyscall"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("usdt"), P::BPF_PROG_TYPE_KPROBE, 0, NONE),
    def(Plus("usdt.s"), P::BPF_PROG_TYPE_KPROBE, 0, SLEEPABLE),
    def(
        E("tc/ingress"),
        P::BPF_PROG_TYPE_SCHED_CLS,
        A::BPF_TCX_INGRESS as u32,
        NONE,
    ),
    def(
        E("tc/egress"),
        P::BPF_PROG_TYPE_SCHED_CLS,
        A::BPF_TCX_EGRESS as u32,
        NONE,
    ),
    def(
        E("tcx/ingress"),
        P::BPF_PROG_TYPE_SCHED_CLS,
        A::BPF_TCX_INGRESS as u32,
        NONE,
    ),
    def(
        E("tcx/egress"),
        P::BPF_PROG_TYPE_SCHED_CLS,
        A::BPF_TCX_EGRESS as u32,
        NONE,
    ),
    def(E("tc"), P::BPF_PROG_TYPE_SCHED_CLS, 0, NONE),
    def(E("classifier"), P::BPF_PROG_TYPE_SCHED_CLS, 0, NONE),
    def(E("action"), P::BPF_PROG_TYPE_SCHED_ACT, 0, NONE),
    def(
        E("netkit/primary"),
        P::BPF_PROG_TYPE_SCHED_CLS,
        A::BPF_NETKIT_PRIMARY as u32,
        NONE,
    ),
    def(
        E("netkit/peer"),
        P::BPF_PROG_TYPE_SCHED_CLS,
        A::BPF_NETKIT_PEER as u32,
        NONE,
    ),
    def(Plus("tracepoint"), P::BPF_PROG_TYPE_TRACEPOINT, 0, NONE),
    def(Plus("tp"), P::BPF_PROG_TYPE_TRACEPOINT, 0, NONE),
    def(
        Plus("raw_tracepoint"),
        P::BPF_PROG_TYPE_RAW_TRACEPOINT,
        0,
        NONE,
    ),
    def(Plus("raw_tp"), P::BPF_PROG_TYPE_RAW_TRACEPOINT, 0, NONE),
    def(
        Plus("raw_tracepoint.w"),
        P::BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
        0,
        NONE,
    ),
    def(
        Plus("raw_tp.w"),
        P::BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
        0,
        NONE,
    ),
    def(
        Plus("tp_btf"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_RAW_TP as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("fentry"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_FENTRY as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("fmod_ret"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_MODIFY_RETURN as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("fexit"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_FEXIT as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("fentry.s"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_FENTRY as u32,
        ATTACH_BTF | SLEEPABLE,
    ),
    def(
        Plus("fmod_ret.s"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_MODIFY_RETURN as u32,
        ATTACH_BTF | SLEEPABLE,
    ),
    def(
        Plus("fexit.s"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_FEXIT as u32,
        ATTACH_BTF | SLEEPABLE,
    ),
    def(Plus("freplace"), P::BPF_PROG_TYPE_EXT, 0, ATTACH_BTF),
    def(
        Plus("lsm"),
        P::BPF_PROG_TYPE_LSM,
        A::BPF_LSM_MAC as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("lsm.s"),
        P::BPF_PROG_TYPE_LSM,
        A::BPF_LSM_MAC as u32,
        ATTACH_BTF | SLEEPABLE,
    ),
    def(
        Plus("lsm_cgroup"),
        P::BPF_PROG_TYPE_LSM,
        A::BPF_LSM_CGROUP as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("iter"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_ITER as u32,
        ATTACH_BTF,
    ),
    def(
        Plus("iter.s"),
        P::BPF_PROG_TYPE_TRACING,
        A::BPF_TRACE_ITER as u32,
        ATTACH_BTF | SLEEPABLE,
    ),
    def(E("syscall"), P::BPF_PROG_TYPE_SYSCALL, 0, SLEEPABLE),
    def(
        E("xdp.frags/devmap"),
        P::BPF_PROG_TYPE_XDP,
        A::BPF_XDP_DEVMAP as u32,
        XDP_FRAGS,
    ),
    def(
        E("xdp/devmap"),
        P::BPF_PROG_TYPE_XDP,
        A::BPF_XDP_DEVMAP as u32,
        NONE,
    ),
    def(
        E("xdp.frags/cpumap"),
        P::BPF_PROG_TYPE_XDP,
        A::BPF_XDP_CPUMAP as u32,
        XDP_FRAGS,
    ),
    def(
        E("xdp/cpumap"),
        P::BPF_PROG_TYPE_XDP,
        A::BPF_XDP_CPUMAP as u32,
        NONE,
    ),
    def(
        E("xdp.frags"),
        P::BPF_PROG_TYPE_XDP,
        A::BPF_XDP as u32,
        XDP_FRAGS,
    ),
    def(E("xdp"), P::BPF_PROG_TYPE_XDP, A::BPF_XDP as u32, NONE),
    def(E("perf_event"), P::BPF_PROG_TYPE_PERF_EVENT, 0, NONE),
    def(E("lwt_in"), P::BPF_PROG_TYPE_LWT_IN, 0, NONE),
    def(E("lwt_out"), P::BPF_PROG_TYPE_LWT_OUT, 0, NONE),
    def(E("lwt_xmit"), P::BPF_PROG_TYPE_LWT_XMIT, 0, NONE),
    def(E("lwt_seg6local"), P::BPF_PROG_TYPE_LWT_SEG6LOCAL, 0, NONE),
    def(
        E("sockops"),
        P::BPF_PROG_TYPE_SOCK_OPS,
        A::BPF_CGROUP_SOCK_OPS as u32,
        NONE,
    ),
    def(
        E("sk_skb/stream_parser"),
        P::BPF_PROG_TYPE_SK_SKB,
        A::BPF_SK_SKB_STREAM_PARSER as u32,
        NONE,
    ),
    def(
        E("sk_skb/stream_verdict"),
        P::BPF_PROG_TYPE_SK_SKB,
        A::BPF_SK_SKB_STREAM_VERDICT as u32,
        NONE,
    ),
    def(
        E("sk_skb/verdict"),
        P::BPF_PROG_TYPE_SK_SKB,
        A::BPF_SK_SKB_VERDICT as u32,
        NONE,
    ),
    def(E("sk_skb"), P::BPF_PROG_TYPE_SK_SKB, 0, NONE),
    def(
        E("sk_msg"),
        P::BPF_PROG_TYPE_SK_MSG,
        A::BPF_SK_MSG_VERDICT as u32,
        NONE,
    ),
    def(
        E("lirc_mode2"),
        P::BPF_PROG_TYPE_LIRC_MODE2,
        A::BPF_LIRC_MODE2 as u32,
        NONE,
    ),
    def(
        E("flow_dissector"),
        P::BPF_PROG_TYPE_FLOW_DISSECTOR,
        A::BPF_FLOW_DISSECTOR as u32,
        NONE,
    ),
    def(
        E("cgroup_skb/ingress"),
        P::BPF_PROG_TYPE_CGROUP_SKB,
        A::BPF_CGROUP_INET_INGRESS as u32,
        NONE,
    ),
    def(
        E("cgroup_skb/egress"),
        P::BPF_PROG_TYPE_CGROUP_SKB,
        A::BPF_CGROUP_INET_EGRESS as u32,
        NONE,
    ),
    def(E("cgroup/skb"), P::BPF_PROG_TYPE_CGROUP_SKB, 0, NONE),
    def(
        E("cgroup/sock_create"),
        P::BPF_PROG_TYPE_CGROUP_SOCK,
        A::BPF_CGROUP_INET_SOCK_CREATE as u32,
        NONE,
    ),
    def(
        E("cgroup/sock_release"),
        P::BPF_PROG_TYPE_CGROUP_SOCK,
        A::BPF_CGROUP_INET_SOCK_RELEASE as u32,
        NONE,
    ),
    def(
        E("cgroup/sock"),
        P::BPF_PROG_TYPE_CGROUP_SOCK,
        A::BPF_CGROUP_INET_SOCK_CREATE as u32,
        NONE,
    ),
    def(
        E("cgroup/post_bind4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK,
        A::BPF_CGROUP_INET4_POST_BIND as u32,
        NONE,
    ),
    def(
        E("cgroup/post_bind6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK,
        A::BPF_CGROUP_INET6_POST_BIND as u32,
        NONE,
    ),
    def(
        E("cgroup/bind4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET4_BIND as u32,
        NONE,
    ),
    def(
        E("cgroup/bind6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET6_BIND as u32,
        NONE,
    ),
    def(
        E("cgroup/connect4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET4_CONNECT as u32,
        NONE,
    ),
    def(
        E("cgroup/connect6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET6_CONNECT as u32,
        NONE,
    ),
    def(
        E("cgroup/connect_unix"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UNIX_CONNECT as u32,
        NONE,
    ),
    def(
        E("cgroup/sendmsg4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UDP4_SENDMSG as u32,
        NONE,
    ),
    def(
        E("cgroup/sendmsg6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UDP6_SENDMSG as u32,
        NONE,
    ),
    def(
        E("cgroup/sendmsg_unix"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UNIX_SENDMSG as u32,
        NONE,
    ),
    def(
        E("cgroup/recvmsg4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UDP4_RECVMSG as u32,
        NONE,
    ),
    def(
        E("cgroup/recvmsg6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UDP6_RECVMSG as u32,
        NONE,
    ),
    def(
        E("cgroup/recvmsg_unix"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UNIX_RECVMSG as u32,
        NONE,
    ),
    def(
        E("cgroup/getpeername4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET4_GETPEERNAME as u32,
        NONE,
    ),
    def(
        E("cgroup/getpeername6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET6_GETPEERNAME as u32,
        NONE,
    ),
    def(
        E("cgroup/getpeername_unix"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UNIX_GETPEERNAME as u32,
        NONE,
    ),
    def(
        E("cgroup/getsockname4"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET4_GETSOCKNAME as u32,
        NONE,
    ),
    def(
        E("cgroup/getsockname6"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_INET6_GETSOCKNAME as u32,
        NONE,
    ),
    def(
        E("cgroup/getsockname_unix"),
        P::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        A::BPF_CGROUP_UNIX_GETSOCKNAME as u32,
        NONE,
    ),
    def(
        E("cgroup/sysctl"),
        P::BPF_PROG_TYPE_CGROUP_SYSCTL,
        A::BPF_CGROUP_SYSCTL as u32,
        NONE,
    ),
    def(
        E("cgroup/getsockopt"),
        P::BPF_PROG_TYPE_CGROUP_SOCKOPT,
        A::BPF_CGROUP_GETSOCKOPT as u32,
        NONE,
    ),
    def(
        E("cgroup/setsockopt"),
        P::BPF_PROG_TYPE_CGROUP_SOCKOPT,
        A::BPF_CGROUP_SETSOCKOPT as u32,
        NONE,
    ),
    def(
        E("cgroup/dev"),
        P::BPF_PROG_TYPE_CGROUP_DEVICE,
        A::BPF_CGROUP_DEVICE as u32,
        NONE,
    ),
    def(Plus("struct_ops"), P::BPF_PROG_TYPE_STRUCT_OPS, 0, NONE),
    def(
        Plus("struct_ops.s"),
        P::BPF_PROG_TYPE_STRUCT_OPS,
        0,
        SLEEPABLE,
    ),
    def(
        E("sk_lookup"),
        P::BPF_PROG_TYPE_SK_LOOKUP,
        A::BPF_SK_LOOKUP as u32,
        NONE,
    ),
    def(
        E("netfilter"),
        P::BPF_PROG_TYPE_NETFILTER,
        A::BPF_NETFILTER as u32,
        NONE,
    ),
];

/// What a section name says about the programs in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionType {
    /// The program type (`BPF_PROG_TYPE_*`).
    pub prog_type: u32,
    /// The expected attach type the kernel is told at load time (`BPF_*`, 0 for none).
    pub attach_type: u32,
    /// `BPF_F_SLEEPABLE`.
    pub sleepable: bool,
    /// `BPF_F_XDP_HAS_FRAGS`.
    pub xdp_frags: bool,
    /// The kernel BTF type the program attaches to (`tp_btf/NAME`, `fentry/NAME`, ...),
    /// resolved at load time.
    pub attach_btf_target: Option<String>,
    /// The type as test runs see it.
    pub kind: ProgKind,
}

impl SectionType {
    /// The type of the programs in `section`, or `None` for a name libbpf does not know.
    pub fn parse(section: &str) -> Option<SectionType> {
        let def = DEFS.iter().find(|d| d.pattern.matches(section))?;
        let target = (def.flags & ATTACH_BTF != 0)
            .then(|| section.split_once('/').map(|(_, t)| t.to_owned()))
            .flatten();
        Some(SectionType {
            prog_type: def.prog_type as u32,
            attach_type: def.attach_type,
            sleepable: def.flags & SLEEPABLE != 0,
            xdp_frags: def.flags & XDP_FRAGS != 0,
            attach_btf_target: target,
            kind: ProgKind::from_prog_type(def.prog_type),
        })
    }

    /// `prog_flags` for `BPF_PROG_LOAD`.
    pub(crate) fn load_flags(&self) -> u32 {
        let mut flags = 0;
        if self.sleepable {
            flags |= aya_obj::generated::BPF_F_SLEEPABLE;
        }
        if self.xdp_frags {
            flags |= aya_obj::generated::BPF_F_XDP_HAS_FRAGS;
        }
        flags
    }
}

impl ProgKind {
    /// The kind of the program in an ELF section such as `xdp`, `tc` or `raw_tp/sys_enter`
    /// (libbpf's section names).
    pub fn from_section(section: &str) -> ProgKind {
        SectionType::parse(section)
            .map(|t| t.kind)
            .unwrap_or_else(|| ProgKind::Other(format!("{UNKNOWN_SECTION} '{section}'")))
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(ProgKind::from_section("tc"), ProgKind::SchedCls);
        assert_eq!(ProgKind::from_section("lwt_xmit"), ProgKind::LwtXmit);
        assert_eq!(
            ProgKind::from_section("foo"),
            ProgKind::Other("unknown section 'foo'".into())
        );
    }

    use super::*;

    fn kind(section: &str) -> Option<String> {
        SectionType::parse(section).map(|t| t.kind.name().to_owned())
    }

    #[test]
    fn libbpf_names_map_to_their_types() {
        assert_eq!(kind("tc").as_deref(), Some("sched_cls"));
        assert_eq!(kind("classifier").as_deref(), Some("sched_cls"));
        assert_eq!(kind("tcx/ingress").as_deref(), Some("sched_cls"));
        assert_eq!(kind("netkit/peer").as_deref(), Some("sched_cls"));
        assert_eq!(kind("action").as_deref(), Some("sched_act"));
        assert_eq!(kind("lwt_xmit").as_deref(), Some("lwt_xmit"));
        assert_eq!(kind("lwt_seg6local").as_deref(), Some("lwt_seg6local"));
        assert_eq!(kind("xdp.frags").as_deref(), Some("xdp"));
        assert_eq!(kind("syscall").as_deref(), Some("syscall"));
        assert_eq!(kind("raw_tp/sys_enter").as_deref(), Some("raw_tracepoint"));
        assert_eq!(
            kind("raw_tp.w/x").as_deref(),
            Some("raw_tracepoint_writable")
        );
        assert_eq!(kind("sk_skb/stream_verdict").as_deref(), Some("sk_skb"));
        assert_eq!(
            kind("cgroup/connect_unix").as_deref(),
            Some("cgroup_sock_addr")
        );
        assert_eq!(kind("fentry/do_unlinkat").as_deref(), Some("tracing"));
    }

    #[test]
    fn exact_names_take_no_suffix_and_plus_names_need_a_slash() {
        assert_eq!(kind("tc/foo"), None);
        assert_eq!(kind("xdp_foo"), None);
        assert_eq!(kind("kprobe/do_sys_open").as_deref(), Some("kprobe"));
        assert_eq!(kind("kprobe").as_deref(), Some("kprobe"));
        assert_eq!(kind("kprobefoo"), None);
        assert_eq!(kind("nonsense"), None);
    }

    #[test]
    fn flags_and_targets() {
        let t = SectionType::parse("xdp.frags").unwrap();
        assert!(t.xdp_frags && !t.sleepable);
        let t = SectionType::parse("fentry.s/bpf_fentry_test1").unwrap();
        assert!(t.sleepable);
        assert_eq!(t.attach_btf_target.as_deref(), Some("bpf_fentry_test1"));
        assert!(SectionType::parse("syscall").unwrap().sleepable);
    }
}
