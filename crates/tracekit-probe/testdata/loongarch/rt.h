/* The few pieces of a C runtime the freestanding LoongArch64 test programs need (no libc):
 * system calls by inline asm, output of strings and numbers, and `_start` calling
 * `int main(int argc, char **argv)` then exit(main's result). Built by clang-19
 * --target=loongarch64-linux-gnu -nostdlib -static -fuse-ld=lld. */
#ifndef TRACEKIT_LA_RT_H
#define TRACEKIT_LA_RT_H

#define SYS_write 64
#define SYS_exit 93

/* The kernel may clobber $t0-$t8 across `syscall`. */
#define SYSCALL_CLOBBERS "memory", "$t0", "$t1", "$t2", "$t3", "$t4", "$t5", "$t6", "$t7", "$t8"

static long sys_write(long fd, const void *buf, long len)
{
    register long a0 __asm__("$a0") = fd;
    register long a1 __asm__("$a1") = (long)buf;
    register long a2 __asm__("$a2") = len;
    register long a7 __asm__("$a7") = SYS_write;
    __asm__ volatile("syscall 0" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : SYSCALL_CLOBBERS);
    return a0;
}

static __attribute__((noreturn)) void sys_exit(long code)
{
    register long a0 __asm__("$a0") = code;
    register long a7 __asm__("$a7") = SYS_exit;
    __asm__ volatile("syscall 0" : : "r"(a0), "r"(a7) : SYSCALL_CLOBBERS);
    __builtin_unreachable();
}

static long str_len(const char *s)
{
    long n = 0;
    while (s[n])
        n++;
    return n;
}

static void put(const char *s)
{
    sys_write(1, s, str_len(s));
}

static void put_num(long v)
{
    char buf[24];
    int i = sizeof buf;
    int neg = v < 0;
    unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
    buf[--i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg)
        buf[--i] = '-';
    put(&buf[i]);
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

int main(int argc, char **argv);

__attribute__((used)) static void start_c(long *sp)
{
    sys_exit(main((int)sp[0], (char **)(sp + 1)));
}

/* The kernel (and QEMU) start us with argc at sp, argv after it. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "  move $a0, $sp\n"
        "  bstrins.d $sp, $zero, 3, 0\n"
        "  bl start_c\n"
        ".size _start, .-_start\n");

#endif
