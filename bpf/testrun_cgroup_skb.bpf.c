// cgroup_skb program for the test run of cgroup socket-buffer programs: allows (1) packets
// of at most 100 bytes and drops (0) longer ones. Like a socket filter it sees the packet
// from the network header on, so skb->len excludes the Ethernet header.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("cgroup_skb/ingress")
int testrun_cgroup_skb(struct __sk_buff *skb)
{
    return skb->len <= 100 ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
