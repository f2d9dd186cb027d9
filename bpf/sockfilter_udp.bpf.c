// Socket filter that keeps UDP packets whole and drops everything else (returns 0).
// A socket filter sees the packet from the network header on (no Ethernet header), so the
// IPv4 protocol byte is at offset 9.
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("socket")
int sockfilter_udp(struct __sk_buff *skb)
{
    __u8 proto;
    if (skb->protocol != bpf_htons(ETH_P_IP))
        return 0;
    if (bpf_skb_load_bytes(skb, offsetof(struct iphdr, protocol), &proto, 1))
        return 0;
    return proto == IPPROTO_UDP ? skb->len : 0;
}

char LICENSE[] SEC("license") = "GPL";
