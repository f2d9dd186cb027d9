/* Return probes across longjmp: jumper() recurses DEPTH levels and longjmps out (its returns
 * never happen); rec() recurses and returns normally; leaf() is a plain call. Each of
 * ITERS iterations calls all three, so rec returns ITERS * (DEPTH + 1) times, leaf ITERS times.
 * Usage: longjmp DEPTH ITERS   (prints a checksum, exits 3) */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf jb;

__attribute__((noinline)) long rec(long n)
{
	if (n == 0)
		return 0;
	long r = rec(n - 1) + 1;
	__asm__ volatile("" ::: "memory");
	return r;
}

__attribute__((noinline)) long jumper(long n)
{
	if (n == 0)
		longjmp(jb, 1);
	long r = jumper(n - 1) + 1;
	__asm__ volatile("" ::: "memory");
	return r;
}

__attribute__((noinline)) long leaf(long a)
{
	__asm__ volatile("" ::: "memory");
	return a * 3;
}

int main(int argc, char **argv)
{
	long depth = argc > 1 ? atol(argv[1]) : 10, iters = argc > 2 ? atol(argv[2]) : 100;
	long sum = 0;
	for (long i = 0; i < iters; i++) {
		sum += rec(depth);
		if (setjmp(jb) == 0)
			jumper(depth);
		sum += leaf(i);
	}
	printf("sum %ld\n", sum);
	return 3;
}
