// One object with the section names libbpf programs use and aya 0.14 refuses (`tc`,
// `tcx/ingress`, `action`, `lwt_xmit`, `syscall` with a map and a subprogram call), a spin
// lock in a custom data section (`.data.locked`: its map needs the section's BTF), and one
// section no loader knows, and one program the verifier refuses. tracekit must list every program, load every known one, and run
// each with a result the test can predict exactly.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

// TC_ACT_SHOT for every packet; the xdp program beside it shows the object still loads.
SEC("tc")
int tc_drop_all(struct __sk_buff *skb)
{
    return TC_ACT_SHOT;
}

SEC("tcx/ingress")
int tcx_pass(struct __sk_buff *skb)
{
    return TC_ACT_OK;
}

SEC("action")
int act_pipe(struct __sk_buff *skb)
{
    return TC_ACT_PIPE;
}

// BPF_DROP for packets over 100 bytes (lwt sees them from the network header on).
SEC("lwt_xmit")
int lwt_drop_big(struct __sk_buff *skb)
{
    return skb->len > 100 ? BPF_DROP : BPF_OK;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

// A counter behind a spin lock in its own data section: each run returns the new count.
struct locked_counter {
    struct bpf_spin_lock lock;
    __u64 count;
};
struct locked_counter locked SEC(".data.locked");

SEC("tc")
int tc_count_locked(struct __sk_buff *skb)
{
    __u64 n;

    bpf_spin_lock(&locked.lock);
    n = ++locked.count;
    bpf_spin_unlock(&locked.lock);
    return n;
}

// A syscall program with a map and a subprogram: adds a and b through `add`, stores the sum
// in the context and counts its runs in `calls`; returns the number of runs so far.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} calls SEC(".maps");

struct args {
    __u32 a;
    __u32 b;
    __u32 sum;
};

static __attribute__((noinline)) __u32 add(__u32 a, __u32 b)
{
    return a + b;
}

SEC("syscall")
int syscall_add_count(struct args *ctx)
{
    __u32 key = 0;
    __u64 *n = bpf_map_lookup_elem(&calls, &key);

    ctx->sum = add(ctx->a, ctx->b);
    if (!n)
        return -1;
    *n += 1;
    return *n;
}

// Refused by the verifier: a hash lookup's result is used without a NULL check. The log
// names the source line, which shows that line info survives the section's renaming.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} seen SEC(".maps");

SEC("tc")
int tc_unchecked_lookup(struct __sk_buff *skb)
{
    __u32 key = skb->len;
    __u64 *n = bpf_map_lookup_elem(&seen, &key);

    return *n;
}

// A section name libbpf does not know: listed with the reason, never loaded.
SEC("no_such_section")
int unknown_section(void *ctx)
{
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
