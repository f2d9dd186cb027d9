// Throws and catches an int N times (argv[1]): libstdc++'s own USDT probes libstdcxx:throw
// and libstdcxx:catch fire once per exception. Prints "caught=N".
#include <cstdio>
#include <cstdlib>

static __attribute__((noinline)) void thrower(int i)
{
    throw i;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? std::atoi(argv[1]) : 0;
    int caught = 0;
    for (int i = 0; i < n; i++) {
        try {
            thrower(i);
        } catch (int) {
            caught++;
        }
    }
    std::printf("caught=%d\n", caught);
    return 0;
}
