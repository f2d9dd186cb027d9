// Externs libbpf resolves at load time, for the loader's tests: kfuncs (`__ksym` functions,
// called with the kernel's BTF ids) and `__kconfig` values (from the running kernel's
// configuration, read-only, so the verifier drops code for other configurations).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct task_struct {
    int pid;
} __attribute__((preserve_access_index));

extern struct task_struct *bpf_task_from_pid(int pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

extern int LINUX_KERNEL_VERSION __kconfig;
extern unsigned long CONFIG_HZ __kconfig;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern unsigned long CONFIG_TRACEKIT_NO_SUCH_OPTION __kconfig __weak;

// A helper that does not exist: only dead code may call it.
static long (*no_such_helper)(void) = (void *)999;

// Looks up the task whose pid the context gives, through kfuncs, and returns its pid as the
// kernel's task_struct has it (-1 if there is no such task).
SEC("syscall")
int kfunc_task_pid(int *pid)
{
    struct task_struct *task = bpf_task_from_pid(*pid);
    int found;

    if (!task)
        return -1;
    found = task->pid;
    bpf_task_release(task);
    return found;
}

struct kconfig_values {
    __u64 kernel_version;
    __u64 hz;
    __u64 bpf_syscall;
    __u64 missing;
};

// Copies the values into its context; the call of the missing helper is dead code for this
// kernel's configuration and must be removed by the verifier.
SEC("syscall")
int kconfig_values(struct kconfig_values *out)
{
    out->kernel_version = LINUX_KERNEL_VERSION;
    out->hz = CONFIG_HZ;
    out->bpf_syscall = CONFIG_BPF_SYSCALL;
    if (CONFIG_TRACEKIT_NO_SUCH_OPTION)
        out->missing = no_such_helper();
    else
        out->missing = 0xdeadc0de;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
