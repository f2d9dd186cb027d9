// A tracepoint program: it loads, but the kernel has no test run for tracepoints, so
// `tracekit prog run` must turn the kernel's ENOTSUPP into a clear message.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tracepoint/syscalls/sys_enter_getpid")
int testrun_tracepoint(void *ctx)
{
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
