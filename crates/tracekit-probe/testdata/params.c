// Functions whose parameters `tracekit probe --print` names from DWARF: integers of each
// size and sign, a char, a bool, a pointer, and parameters after a float (in an SSE
// register) and after a struct passed on the stack, which take the next integer register.
//
// Usage: params N   calls each function N times with known arguments (call i: n = -5 - i,
// flag = i odd) and prints the sum of the n, x and a they received, with make_big's x and
// wide's a + b (6 + 3 * (11 + 77) = 270 for N = 3).
//
// Build: gcc -O1 -g -o params params.c
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct big {
    long a, b, c;
};

long sink;

__attribute__((noinline)) int work(int n, unsigned char c, const char *name, bool flag, short s)
{
    sink += n;
    return n + c + (flag ? s : 0) + name[0];
}

__attribute__((noinline)) long after_struct(long x, struct big b, long y)
{
    sink += x;
    return x + b.a + y;
}

__attribute__((noinline)) double after_float(int a, double d, unsigned long b)
{
    sink += a;
    return a + d + (double)b;
}

// Returned in memory: the caller passes the result's address in rdi, so x is in rsi.
__attribute__((noinline)) struct big make_big(long x, long y)
{
    struct big b = {x, y, x + y};
    sink += x;
    return b;
}

// A 16-byte integer takes two registers (rdi, rsi): b is in rdx.
__attribute__((noinline)) short wide(__int128 a, long b)
{
    sink += (long)a + b;
    return (short)-999;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    struct big b = {1, 2, 3};
    for (int i = 0; i < n; i++) {
        work(-5 - i, 'A', "hi", i & 1, -300);
        after_struct(7, b, -9);
        after_float(1, 2.5, 18446744073709551615UL);
        make_big(11, 22);
        wide(33, 44);
    }
    printf("%ld\n", sink);
    return 0;
}
