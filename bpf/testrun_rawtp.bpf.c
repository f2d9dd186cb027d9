// raw_tp program for the test run of raw tracepoints: the context is the array of u64
// tracepoint arguments; the program returns args[0] + args[1] so a test knows the answer.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("raw_tp/sys_enter")
int testrun_rawtp(__u64 *ctx)
{
    return (int)(ctx[0] + ctx[1]);
}

char LICENSE[] SEC("license") = "GPL";
