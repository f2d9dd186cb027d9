/* Freestanding LoongArch64 test program for the gdb remote client (no libc: rt.h's
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

#include "rt.h"

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

int main(int argc, char **argv)
{
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
    return 3;
}
