// SPDX-License-Identifier: GPL-2.0
// A minimal fentry program: `tracekit probe` loads it to ask the kernel whether BPF
// trampolines work here, so a kprobe: spec can say precisely what is missing.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry")
int tk_fentry(void *ctx)
{
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
