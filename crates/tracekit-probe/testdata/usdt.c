// USDT probes (<sys/sdt.h>, Debian's systemtap-sdt-dev) for the probe tests.
//
//   usdt N       fires tk:step N times (i = 1..N), then prints "guarded=K sema=S": K is how
//                often the branch guarded by TK_STEP_ENABLED() ran (only while a tracer holds
//                the semaphore), S the semaphore's value at the end. tk:plain fires 2N
//                times from three sites (it is inlined three times).
//   usdt steps   reads commands from stdin, answering each with one line:
//                  peek   "sema=S"                (fires nothing)
//                  fire   fires tk:step once, "guarded=K"
//                  quit   exits
//
// tk:step's arguments for step i: arg0 = i (long), arg1 = -i (int), arg2 = 200 + i (unsigned
// char), arg3 = 0xdeadbeef00000000 + i (unsigned long), arg4 = -1000 * i (short in memory).
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// With _SDT_HAS_SEMAPHORES every probe has one; tk:plain's is never tested by the program.
__extension__ unsigned short tk_step_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short tk_plain_semaphore __attribute__((unused)) __attribute__((section(".probes")));
#define TK_STEP_ENABLED() __builtin_expect(tk_step_semaphore, 0)

static long guarded;
volatile short tk_mem_arg;

static inline __attribute__((always_inline)) void plain(long i)
{
    DTRACE_PROBE1(tk, plain, i);
}

static __attribute__((noinline)) void step(long i)
{
    if (TK_STEP_ENABLED()) {
        guarded++;
        tk_mem_arg = (short)(-1000 * i);
        DTRACE_PROBE5(tk, step, i, (int)-i, (unsigned char)(200 + i),
                      (unsigned long)(0xdeadbeef00000000UL + i), tk_mem_arg);
    }
}

static void run_steps(void)
{
    char line[64];
    long i = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "peek", 4) == 0) {
            printf("sema=%u\n", tk_step_semaphore);
        } else if (strncmp(line, "fire", 4) == 0) {
            step(++i);
            printf("guarded=%ld\n", guarded);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "steps") == 0) {
        run_steps();
        return 0;
    }
    long n = argc > 1 ? atol(argv[1]) : 0;
    for (long i = 1; i <= n; i++) {
        step(i);
        plain(i);
        if (i % 2)
            plain(-i);
        else
            plain(i * 2);
    }
    printf("guarded=%ld sema=%u\n", guarded, tk_step_semaphore);
    return 0;
}
