/*
 * The jump engine's fallback cases: functions a 5-byte jump cannot replace the start of.
 *
 * Build:  gcc -O1 -g -o jump-target jump.c -lpthread
 * Usage:  jump-target N           call every function N times, print a checksum
 *         jump-target --signals N call tkj_leaf N times while a 100 us timer's SIGALRM
 *                                 handler calls it too; prints how many calls there were in all
 *         jump-target --block     a thread blocks in tkj_read (read from stdin) at an
 *                                 instruction inside the first 5 bytes; main prints its pid and
 *                                 "ready" and waits for the thread (stdin closed: it returns)
 *
 *   tkj_loop(n)    a loop branches back to offset 3, inside the first 5 bytes  returns n
 *   tkj_table(i)   switch through a jump table (jmp *table(,%rdi,8))           returns 10 + i%3
 *   tkj_short(a)   mov rax,rdi; ret: 4 bytes in all                            returns a
 *   tkj_read(fd, buf, n)  xor eax,eax; syscall; nop; ret: read(2)              returns its result
 *   tkj_tail(a)    tail call: mov, add, then jmp tkj_leaf (same frame)         returns a + 3
 *   tkj_leaf(a)    lea rax,[rdi+2]; nop; ret                                   returns a + 2
 */
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long tkj_loop(long n);
long tkj_table(long i);
long tkj_short(long a);
long tkj_read(long fd, void *buf, long n);
long tkj_tail(long a);
long tkj_leaf(long a);

__asm__(
	".text\n"
	".globl tkj_loop\n .type tkj_loop, @function\n .p2align 4\n"
	"tkj_loop:\n"
	"	xor %eax, %eax\n"
	"	push %rbp\n"
	"1:	inc %rax\n"
	"	cmp %rdi, %rax\n"
	"	jl 1b\n"
	"	pop %rbp\n"
	"	ret\n"
	".size tkj_loop, .-tkj_loop\n"

	".globl tkj_table\n .type tkj_table, @function\n .p2align 4\n"
	"tkj_table:\n"
	"	mov %rdi, %rax\n"
	"	xor %edx, %edx\n"
	"	mov $3, %ecx\n"
	"	div %rcx\n"
	"	lea tkj_cases(%rip), %rax\n"
	"	jmp *(%rax,%rdx,8)\n"
	"2:	mov $10, %eax\n"
	"	ret\n"
	"3:	mov $11, %eax\n"
	"	ret\n"
	"4:	mov $12, %eax\n"
	"	ret\n"
	".size tkj_table, .-tkj_table\n"
	".section .data.rel.ro,\"aw\"\n .p2align 3\n"
	"tkj_cases: .quad 2b, 3b, 4b\n"
	".text\n"

	".globl tkj_short\n .type tkj_short, @function\n .p2align 4\n"
	"tkj_short:\n"
	"	mov %rdi, %rax\n"
	"	ret\n"
	".size tkj_short, .-tkj_short\n"

	".globl tkj_read\n .type tkj_read, @function\n .p2align 4\n"
	"tkj_read:\n"
	"	xor %eax, %eax\n"
	"	syscall\n"
	"	nop\n"
	"	ret\n"
	".size tkj_read, .-tkj_read\n"

	".globl tkj_tail\n .type tkj_tail, @function\n .p2align 4\n"
	"tkj_tail:\n"
	"	mov %rdi, %rax\n"
	"	add $1, %rdi\n"
	"	jmp tkj_leaf\n"
	".size tkj_tail, .-tkj_tail\n"

	".globl tkj_leaf\n .type tkj_leaf, @function\n .p2align 4\n"
	"tkj_leaf:\n"
	"	lea 2(%rdi), %rax\n"
	"	nop\n"
	"	ret\n"
	".size tkj_leaf, .-tkj_leaf\n");

static volatile long handler_calls;
static volatile unsigned long handler_sum;

static void on_alarm(int sig)
{
	(void)sig;
	handler_sum += (unsigned long)tkj_leaf(handler_calls);
	handler_calls++;
}

/* Calls tkj_leaf n times with a SIGALRM handler calling it too, every 100 us: the handler
 * lands anywhere in the probes' trampolines, including between their stores. Each signal
 * stops the program for its tracer: with a 20 us timer, a tracer slower than that left the
 * loop almost no time to run (once over 190 s, where an earlier run took 53 s). */
static int signals(long n)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 100}, {0, 100}};
	setitimer(ITIMER_REAL, &it, NULL);
	unsigned long sum = 0;
	for (long i = 0; i < n; i++)
		sum += (unsigned long)tkj_leaf(i);
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	long want = n * (n - 1) / 2 + 2 * n;
	printf("calls %ld %s\n", n + handler_calls, (long)sum == want ? "ok" : "WRONG");
	return (long)sum == want ? 0 : 1;
}

static void *blocker(void *p)
{
	char c;
	(void)p;
	return (void *)tkj_read(0, &c, 1);
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--signals"))
		return signals(atol(argv[2]));
	if (argc > 1 && !strcmp(argv[1], "--block")) {
		pthread_t t;
		void *r;
		pthread_create(&t, NULL, blocker, NULL);
		usleep(100000); /* let the thread reach the syscall */
		printf("%d ready\n", getpid());
		fflush(stdout);
		pthread_join(t, &r);
		printf("read returned %ld\n", (long)r);
		return 0;
	}
	long n = argc > 1 ? atol(argv[1]) : 10;
	unsigned long sum = 0;
	for (long i = 0; i < n; i++) {
		sum = sum * 31 + (unsigned long)tkj_loop(i % 7 + 1);
		sum = sum * 31 + (unsigned long)tkj_table(i);
		sum = sum * 31 + (unsigned long)tkj_short(i);
		sum = sum * 31 + (unsigned long)tkj_tail(i);
	}
	printf("calls %ld checksum %lu\n", n, sum);
	return 0;
}
