// XDP port filter: drops IPv4 TCP and UDP packets whose destination port is DROP_PORT
// (9999), passes everything else. Packets too short to parse are passed, never read past
// data_end (the verifier insists).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DROP_PORT 9999

SEC("xdp")
int xdp_port_filter(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->ihl < 5)
        return XDP_PASS;
    if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
        return XDP_PASS;
    // TCP and UDP both start with source port, destination port.
    struct udphdr *l4 = (void *)ip + ip->ihl * 4;
    if ((void *)(l4 + 1) > data_end)
        return XDP_PASS;
    return l4->dest == bpf_htons(DROP_PORT) ? XDP_DROP : XDP_PASS;
}

// Pushes a 4-byte tag in front of the packet: the output is longer than the input, which is
// what a caller's too-small data_out buffer (ENOSPC) looks like in practice.
SEC("xdp")
int xdp_push_tag(struct xdp_md *ctx)
{
    if (bpf_xdp_adjust_head(ctx, -4))
        return XDP_ABORTED;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (data + 4 > data_end)
        return XDP_ABORTED;
    __builtin_memcpy(data, "TAG!", 4);
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
