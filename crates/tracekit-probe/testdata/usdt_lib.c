// A USDT probe with a semaphore in a shared library, for the probe tests: the semaphore is in
// the library's data, so a tracer can only increment it once the library is mapped.
//
//   gcc -O1 -g -shared -fPIC -DTK_LIB -o libtkusdt.so usdt_lib.c        the library
//   gcc -O1 -g -o usdt-lib usdt_lib.c DIR/libtkusdt.so -Wl,-rpath,DIR    the program
//
// `usdt-lib N` calls tklib_call(i) for i = 1..N; tklib:call (argument i) fires only while the
// semaphore is held. Prints "guarded=K", K the calls that ran the guarded branch.
#include <stdio.h>
#include <stdlib.h>

#ifdef TK_LIB
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

__extension__ unsigned short tklib_call_semaphore __attribute__((unused)) __attribute__((section(".probes")));

static long guarded;

long tklib_call(long i)
{
    if (__builtin_expect(tklib_call_semaphore, 0)) {
        guarded++;
        DTRACE_PROBE1(tklib, call, i);
    }
    return guarded;
}
#else
long tklib_call(long i);

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 0, guarded = 0;
    for (long i = 1; i <= n; i++)
        guarded = tklib_call(i);
    printf("guarded=%ld\n", guarded);
    return 0;
}
#endif
