/* N 16-byte atomic additions: GCC calls libatomic's __atomic_fetch_add_16, an IFUNC whose
 * resolver picks the implementation for this CPU when the program is loaded. */
#include <stdio.h>
#include <stdlib.h>

static __int128 counter;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    for (long i = 0; i < n; i++)
        __atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST);
    printf("%lld\n", (long long)counter);
    return 0;
}
