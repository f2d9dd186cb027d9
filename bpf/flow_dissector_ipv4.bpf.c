// Minimal flow dissector: fills the flow keys of IPv4 TCP/UDP packets (protocol, addresses,
// ports) and returns BPF_OK; anything else is BPF_DROP (the kernel then falls back to its
// own dissector). The test run returns the keys as data_out.
//
// Headers are read directly from the packet when they are in the linear part, as in the
// kernel's selftest: in a test run there is no skb, so bpf_skb_load_bytes fails there.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

static __always_inline void *header(struct __sk_buff *skb, __u16 off, __u16 size, void *buf)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    if (off > 0xffff - size)
        return NULL;
    if (data + off + size <= data_end)
        return data + off;
    return bpf_skb_load_bytes(skb, off, buf, size) ? NULL : buf;
}

SEC("flow_dissector")
int flow_dissector_ipv4(struct __sk_buff *skb)
{
    struct bpf_flow_keys *keys = skb->flow_keys;
    struct iphdr ip_buf, *ip;
    struct udphdr l4_buf, *l4;
    if (keys->n_proto != bpf_htons(ETH_P_IP))
        return BPF_DROP;
    ip = header(skb, keys->nhoff, sizeof(*ip), &ip_buf);
    if (!ip || ip->ihl < 5)
        return BPF_DROP;
    keys->addr_proto = ETH_P_IP;
    keys->ipv4_src = ip->saddr;
    keys->ipv4_dst = ip->daddr;
    keys->ip_proto = ip->protocol;
    keys->thoff = keys->nhoff + ip->ihl * 4;
    if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
        return BPF_OK;
    l4 = header(skb, keys->thoff, sizeof(*l4), &l4_buf);
    if (!l4)
        return BPF_DROP;
    keys->sport = l4->source;
    keys->dport = l4->dest;
    return BPF_OK;
}

char LICENSE[] SEC("license") = "GPL";
