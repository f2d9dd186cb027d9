// The ELF seed of the elf-symbols, usdt-notes and dwarf targets: two functions with
// parameters (DWARF), two USDT probes with semaphores. Build (x86-64):
//   gcc -O1 -g -o seed seed.c
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>

__extension__ unsigned short fz_hit_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short fz_plain_semaphore __attribute__((unused)) __attribute__((section(".probes")));

__attribute__((noinline)) long add(long a, int b, unsigned char c)
{
    DTRACE_PROBE3(fz, hit, a, b, c);
    return a + b + c;
}

__attribute__((noinline)) int scale(int x, short factor)
{
    DTRACE_PROBE1(fz, plain, x);
    return x * factor;
}

int main(int argc, char **argv)
{
    (void)argv;
    printf("%ld\n", add(argc, 2, 3) + scale(argc, 4));
    return 0;
}
