// A syscall program (BPF_PROG_TYPE_SYSCALL, sleepable): its context is a user buffer that
// the kernel copies in and back out, so the program can return results in it.
// It stores a + b into sum and returns 7.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
    __u32 a;
    __u32 b;
    __u32 sum;
};

SEC("syscall")
int testrun_syscall(struct args *ctx)
{
    ctx->sum = ctx->a + ctx->b;
    return 7;
}

char LICENSE[] SEC("license") = "GPL";
