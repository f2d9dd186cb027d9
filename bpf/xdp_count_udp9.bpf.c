// Receiving side of the live-frames test: counts the UDP packets to port 9 (the discard
// port, which is what the test sends) that reach the interface and drops them; anything
// else passes. The count is exact, whatever else the interface sees.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} udp9 SEC(".maps");

SEC("xdp")
int xdp_count_udp9(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *udp = (void *)(ip + 1);
    __u32 key = 0;
    __u64 *n;

    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
        ip->ihl != 5 || ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(9))
        return XDP_PASS;
    n = bpf_map_lookup_elem(&udp9, &key);
    if (n)
        __sync_fetch_and_add(n, 1);
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
