/* The LoongArch64 program the probe engine's end-to-end tests run under
 * `qemu-loongarch64-static -g PORT` (tests/loongarch_probe.rs, tracekit's CLI tests).
 *
 * Usage: la-probe-target [N]     (N defaults to 5)
 * Calls each function below exactly N times, prints one line per function with the sum of
 * its results, then "done", and exits with status 3. Every function's result depends on its
 * first instruction running correctly, so a mis-simulated probe changes the output.
 *
 * First instruction of each probed function (the engine's handling):
 *   work        C code (ordinary: out of line)        returns x * 3
 *   first_b     `b` over a wrong result (simulated)  returns x + 1
 *   first_pcadd `pcaddu12i` (simulated)              returns x + 4092
 *   first_addi  `addi.d` (ordinary: out of line)     returns x + 7
 *   first_bceqz `bceqz $fcc0` (simulated, reads fcc) returns x + 100 (fcc0 = 0) / x + 200
 *   first_llsc  `ll.w` (refused: LL/SC)              atomically adds x to *p, returns the old
 *   set_fcc0    `movgr2cf` (ordinary)                sets fcc0 = a0 & 1
 */
#include "rt.h"

__asm__(".text\n"
        ".globl first_b\n.type first_b, @function\nfirst_b:\n"
        "  b 1f\n"
        "  addi.d $a0, $a0, 99\n"
        "1:addi.d $a0, $a0, 1\n"
        "  ret\n"
        ".size first_b, .-first_b\n"

        ".globl first_pcadd\n.type first_pcadd, @function\nfirst_pcadd:\n"
        "  pcaddu12i $t0, 1\n"
        "  pcaddi $t1, 0\n"
        "  sub.d $t0, $t0, $t1\n"
        "  add.d $a0, $a0, $t0\n"
        "  ret\n"
        ".size first_pcadd, .-first_pcadd\n"

        ".globl first_addi\n.type first_addi, @function\nfirst_addi:\n"
        "  addi.d $a0, $a0, 7\n"
        "  ret\n"
        ".size first_addi, .-first_addi\n"

        ".globl first_bceqz\n.type first_bceqz, @function\nfirst_bceqz:\n"
        "  bceqz $fcc0, 1f\n"
        "  addi.d $a0, $a0, 200\n"
        "  ret\n"
        "1:addi.d $a0, $a0, 100\n"
        "  ret\n"
        ".size first_bceqz, .-first_bceqz\n"

        ".globl first_llsc\n.type first_llsc, @function\nfirst_llsc:\n"
        "  ll.w $t0, $a0, 0\n"
        "  add.w $t1, $t0, $a1\n"
        "  sc.w $t1, $a0, 0\n"
        "  beqz $t1, first_llsc\n"
        "  move $a0, $t0\n"
        "  ret\n"
        ".size first_llsc, .-first_llsc\n"

        ".globl set_fcc0\n.type set_fcc0, @function\nset_fcc0:\n"
        "  movgr2cf $fcc0, $a0\n"
        "  ret\n"
        ".size set_fcc0, .-set_fcc0\n");

long first_b(long x);
long first_pcadd(long x);
long first_addi(long x);
long first_bceqz(long x);
int first_llsc(int *p, int x);
void set_fcc0(long v);

__attribute__((noinline, used)) long work(long x)
{
    __asm__ volatile("" : "+r"(x));
    return x * 3;
}

static void line(const char *name, long v)
{
    put(name);
    put(" ");
    put_num(v);
    put("\n");
}

static long parse(const char *s)
{
    long v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return v;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? parse(argv[1]) : 5;
    long w = 0, b = 0, pc = 0, ad = 0, fc = 0;
    int counter = 0;
    for (long i = 0; i < n; i++) {
        w += work(i);
        b += first_b(i);
        pc += first_pcadd(i);
        ad += first_addi(i);
        set_fcc0(i & 1);
        fc += first_bceqz(i);
        first_llsc(&counter, 1);
    }
    line("work", w);
    line("first_b", b);
    line("first_pcadd", pc);
    line("first_addi", ad);
    line("first_bceqz", fc);
    line("first_llsc", counter);
    put("done\n");
    return 3;
}
