// A CO-RE relocation that cannot be applied: `task_struct___missing` is matched against the
// kernel's `task_struct`, which has no field `no_such_field`. The loader leaves the read as a
// call of the non-existent helper 0xbad2310, the verifier refuses it, and tracekit must name
// the type and field, as libbpf does.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___missing {
    int no_such_field;
} __attribute__((preserve_access_index));

SEC("raw_tp/sys_enter")
int core_missing_field(void *ctx)
{
    struct task_struct___missing *task = (void *)bpf_get_current_task();

    return BPF_CORE_READ(task, no_such_field);
}

char LICENSE[] SEC("license") = "GPL";
