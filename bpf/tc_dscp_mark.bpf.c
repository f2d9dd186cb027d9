// TC classifier that rewrites a header field: IPv4 packets get DSCP EF (TOS 0xb8) with the
// IP header checksum fixed incrementally; IPv4 packets with TTL <= 1 are dropped
// (TC_ACT_SHOT); everything else passes untouched (TC_ACT_OK).
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TOS_EF 0xb8
#define TOS_OFF (ETH_HLEN + offsetof(struct iphdr, tos))
#define CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

SEC("classifier")
int tc_dscp_mark(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TC_ACT_OK;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return TC_ACT_OK;
    if (ip->ttl <= 1)
        return TC_ACT_SHOT;
    // The checksum covers 16-bit words: TOS is the low byte of the first word
    // (version/ihl, tos), so replace that whole word.
    __u16 old_word = *(__u16 *)ip;
    __u16 new_word = old_word;
    ((__u8 *)&new_word)[1] = TOS_EF;
    bpf_l3_csum_replace(skb, CSUM_OFF, old_word, new_word, sizeof(__u16));
    __u8 tos = TOS_EF;
    bpf_skb_store_bytes(skb, TOS_OFF, &tos, 1, 0);
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
