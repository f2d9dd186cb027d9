// Live-frames test program: sends every frame back out of the interface it came in on
// (XDP_TX). Under BPF_F_TEST_XDP_LIVE_FRAMES with the context's ingress_ifindex set to one
// end of a veth pair, every run puts one frame on the wire to the other end.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_live_tx(struct xdp_md *ctx)
{
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
