// CO-RE relocations that libbpf applies and aya-obj 0.3 cannot (crates/tracekit-prog/src/
// core_fixups.rs). The program returns one bit per check, so a test run shows each result:
//   bit 0: `task_struct___same` matches the kernel's task_struct (int pid, int tgid);
//   bit 1: `task_struct___wider` does not (its pid is a long: sizes differ);
//   bit 2: a type the kernel lacks does not match;
//   bit 3: the kernel type id of a type the kernel lacks is 0 (libbpf's answer);
//   bit 4: the size of a type the kernel lacks is 0;
//   bit 5: the offset of element 0 of the kernel's flexible array fib6_info.fib6_nh[] is the
//          offset of the member, and the kernel's (beyond 64 bytes), not the local one (4).
// Expected: 0b111001 = 57.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___same {
    int pid;
    int tgid;
};

struct task_struct___wider {
    long pid;
};

struct tracekit_no_such_type {
    int x;
};

struct fib6_nh___local {
    int fib_nh_flags;
} __attribute__((preserve_access_index));

struct fib6_info___local {
    unsigned int fib6_flags;
    struct fib6_nh___local fib6_nh[];
} __attribute__((preserve_access_index));

SEC("raw_tp/sys_enter")
int core_fixups(void *ctx)
{
    struct fib6_info___local *rt = 0;
    unsigned long element0 = (unsigned long)&rt->fib6_nh[0];
    unsigned long member = bpf_core_field_offset(struct fib6_info___local, fib6_nh);
    int result = 0;

    result |= bpf_core_type_matches(struct task_struct___same) << 0;
    result |= bpf_core_type_matches(struct task_struct___wider) << 1;
    result |= bpf_core_type_matches(struct tracekit_no_such_type) << 2;
    result |= (bpf_core_type_id_kernel(struct tracekit_no_such_type) == 0) << 3;
    result |= (bpf_core_type_size(struct tracekit_no_such_type) == 0) << 4;
    result |= (element0 == member && member > 64) << 5;
    return result;
}

char LICENSE[] SEC("license") = "GPL";
