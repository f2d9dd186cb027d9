// sk_lookup program for the test run of socket lookups: the context (struct bpf_sk_lookup)
// comes from user space; connections to local port 7 are dropped, others pass.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_lookup")
int testrun_sklookup(struct bpf_sk_lookup *ctx)
{
    return ctx->local_port == 7 ? SK_DROP : SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
