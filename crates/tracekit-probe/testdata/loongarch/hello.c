/* Freestanding LoongArch64 test program for the gdb remote client (no libc: its own
 * `_start` and inline-asm system calls), run under `qemu-loongarch64-static -g PORT`.
 *
 * Usage:
 *   la-hello          calls work(0..4) (exactly 5 calls), prints "hello: total=10\n", exits 3
 *   la-hello loop     calls work() forever (for interrupt tests); never exits by itself
 *   la-hello break    executes `break 0` (after printing "break\n"), then exits 4
 *
 * Build: clang-19 --target=loongarch64-linux-gnu -nostdlib -static -fuse-ld=lld
 *        -ffreestanding -fno-stack-protector -O1 -g -o la-hello hello.c
 * (tracekit_probe::testdata::compile_loongarch("loongarch/hello.c", "la-hello")).
 */

#define SYS_write 64
#define SYS_exit 93

/* The kernel may clobber $t0-$t8 across `syscall`. */
#define SYSCALL_CLOBBERS \
    "memory", "$t0", "$t1", "$t2", "$t3", "$t4", "$t5", "$t6", "$t7", "$t8"

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

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* Written by work() so that neither the calls nor the loop can be optimised away. */
volatile long total;

__attribute__((noinline, used)) void work(int x)
{
    total += x;
}

/* Returns fcc0..fcc7 as a mask (bit i = $fcc<i>). Never called by the program itself: the gdb
 * tests point the pc here to check that the stub's fcc register writes reach the real flags. */
#define FCC_BIT(i)                                                 \
    do {                                                           \
        long b;                                                    \
        __asm__ volatile("movcf2gr %0, $fcc" #i : "=r"(b));        \
        mask |= (b & 1) << (i);                                    \
    } while (0)

__attribute__((noinline, used)) long fcc_bits(void)
{
    long mask = 0;
    FCC_BIT(0);
    FCC_BIT(1);
    FCC_BIT(2);
    FCC_BIT(3);
    FCC_BIT(4);
    FCC_BIT(5);
    FCC_BIT(6);
    FCC_BIT(7);
    return mask;
}

static void put_num(long v)
{
    char buf[24];
    int i = sizeof buf;
    buf[--i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(&buf[i]);
}

__attribute__((used)) void start_c(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);

    if (argc > 1 && streq(argv[1], "loop")) {
        for (int i = 0;; i++)
            work(i);
    }
    if (argc > 1 && streq(argv[1], "break")) {
        put("break\n");
        __asm__ volatile("break 0");
        sys_exit(4);
    }
    for (int i = 0; i < 5; i++)
        work(i);
    put("hello: total=");
    put_num(total);
    put("\n");
    sys_exit(3);
}

/* The kernel leaves argc at 0($sp), argv after it. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    move $a0, $sp\n"
        "    bl start_c\n"
        ".size _start, . - _start\n");
