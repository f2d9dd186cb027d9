/*
 * probe-target: the test program for tracekit's probe engines (BPF and ptrace).
 *
 * Build:  gcc -O1 -g -o probe-target target.c -lpthread
 *
 * Usage:  probe-target [--threads T] [--only FUNC] [--sleep S] [--print] [--exit CODE]
 *                      [--signal] [--wait-stdin] [--fork] [--vfork] [--dlopen LIB] N
 *
 * Each of the T threads (default 1) calls every probe function exactly N times, so each
 * function runs T*N times in all; tk_sleep_1ms runs S times per thread (default 0).
 * --only FUNC   call only that function (e.g. --only tk_empty) N times per thread.
 * --print       print the return value of every call of thread 0 (deterministic order).
 * --exit CODE   exit with status CODE after printing (default 0).
 * --signal      raise SIGUSR1 at the middle of thread 0's calls; prints "got SIGUSR1: 1".
 * --wait-stdin  read one byte from stdin before calling anything (lets a tracer attach first).
 * --fork        first fork a child that makes thread 0's calls (N each) and prints
 *               "child checksum X"; the parent waits for it, prints "child exit S", then
 *               does its own calls as usual (so each function runs N more times in all).
 * --dlopen LIB  in the middle of thread 0's calls (other threads keep calling), dlopen LIB
 *               (testdata/dl.c built as a shared library) and call its tk_dl_func N times;
 *               prints "dlopen checksum X" at the end.
 * --vfork       first vfork a child that calls tk_empty(1, 2) once and execs /bin/true;
 *               the parent prints "vfork child exit S" (tk_empty runs once more in all).
 *
 * Output is deterministic: one line per thread "thread I checksum X" and a final
 * "total calls C checksum X" line, so runs with and without probes compare byte for byte.
 *
 * Probe functions (all noinline / hand-written, each a separate symbol with a size):
 *   tk_empty(a, b)   C, returns a + b
 *   tk_sleep_1ms()   C, nanosleep 1 ms, returns 1
 *   tk_riprel(a)     first instruction: mov rax, [rip + tk_data]     returns tk_data + a
 *   tk_lea(a, b)     first instruction: lea rax, [rip + tk_data]     returns tk_data + b
 *   tk_call(a)       first instruction: call tk_helper (rel32)       returns 2a + 1
 *   tk_jmp(a)        first instruction: jmp rel32 to a local label   returns a + 3
 *   tk_jcc(a)        first instruction: jne rel8 (flags set by the caller tk_jcc_entry:
 *                    test dil, 1), both paths taken                  returns a + 100 or a + 200
 *   tk_push(a, b)    first instruction: push rbp                     returns a + 2b
 *   tk_evex()        first instruction: vpxord zmm16 (EVEX, AVX-512); never called (the CPU
 *                    may lack AVX-512): the BPF engine must refuse it before attaching
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

long tk_data = 40;

__attribute__((noinline)) long tk_empty(long a, long b)
{
	__asm__ volatile("" ::: "memory");
	return a + b;
}

__attribute__((noinline)) long tk_sleep_1ms(void)
{
	struct timespec ts = { 0, 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
	return 1;
}

long tk_riprel(long a);
long tk_lea(long a, long b);
long tk_call(long a);
long tk_jmp(long a);
long tk_jcc(long a);
long tk_jcc_entry(long a);
long tk_push(long a, long b);
long tk_helper(long a);
void tk_evex(void);

__asm__(
	".text\n"
	".globl tk_helper\n .type tk_helper, @function\n .p2align 4\n"
	"tk_helper:\n"
	"	lea (%rdi,%rdi,1), %rax\n"
	"	ret\n"
	".size tk_helper, .-tk_helper\n"

	".globl tk_riprel\n .type tk_riprel, @function\n .p2align 4\n"
	"tk_riprel:\n"
	"	mov tk_data(%rip), %rax\n"
	"	add %rdi, %rax\n"
	"	ret\n"
	".size tk_riprel, .-tk_riprel\n"

	".globl tk_lea\n .type tk_lea, @function\n .p2align 4\n"
	"tk_lea:\n"
	"	lea tk_data(%rip), %rax\n"
	"	mov (%rax), %rax\n"
	"	add %rsi, %rax\n"
	"	ret\n"
	".size tk_lea, .-tk_lea\n"

	".globl tk_call\n .type tk_call, @function\n .p2align 4\n"
	"tk_call:\n"
	"	call tk_helper\n"
	"	add $1, %rax\n"
	"	ret\n"
	".size tk_call, .-tk_call\n"

	".globl tk_jmp\n .type tk_jmp, @function\n .p2align 4\n"
	"tk_jmp:\n"
	"	.byte 0xe9\n .long 1f - (. + 4)\n" /* jmp rel32, spelled out so it stays rel32 */
	"	ud2\n"
	"1:	lea 3(%rdi), %rax\n"
	"	ret\n"
	".size tk_jmp, .-tk_jmp\n"

	".globl tk_jcc\n .type tk_jcc, @function\n .p2align 4\n"
	"tk_jcc:\n"
	"	jne 1f\n"
	"	lea 100(%rdi), %rax\n"
	"	ret\n"
	"1:	lea 200(%rdi), %rax\n"
	"	ret\n"
	".size tk_jcc, .-tk_jcc\n"

	".globl tk_jcc_entry\n .type tk_jcc_entry, @function\n .p2align 4\n"
	"tk_jcc_entry:\n"
	"	test $1, %dil\n"
	"	jmp tk_jcc\n"
	".size tk_jcc_entry, .-tk_jcc_entry\n"

	".globl tk_push\n .type tk_push, @function\n .p2align 4\n"
	"tk_push:\n"
	"	push %rbp\n"
	"	mov %rsp, %rbp\n"
	"	lea (%rdi,%rsi,2), %rax\n"
	"	pop %rbp\n"
	"	ret\n"
	".size tk_push, .-tk_push\n"

	".globl tk_evex\n .type tk_evex, @function\n .p2align 4\n"
	"tk_evex:\n"
	"	vpxord %zmm16, %zmm16, %zmm16\n"
	"	ret\n"
	".size tk_evex, .-tk_evex\n");

static long n_calls, n_sleeps;
static int do_print, do_signal;
static const char *only, *dl_path;
static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

static unsigned long dl_sum;

static void call_dl(void)
{
	void *h = dlopen(dl_path, RTLD_NOW);
	long (*f)(long) = h ? (long (*)(long))dlsym(h, "tk_dl_func") : NULL;
	if (!f) {
		fprintf(stderr, "dlopen %s: %s\n", dl_path, dlerror());
		exit(1);
	}
	for (long k = 0; k < n_calls; k++)
		dl_sum = dl_sum * 31 + (unsigned long)f(k);
}

static int wanted(const char *name)
{
	return only == NULL || strcmp(only, name) == 0;
}

struct thread_arg {
	long id;
	unsigned long checksum;
	long calls;
};

static void record(struct thread_arg *t, const char *fn, long i, long v)
{
	t->checksum = t->checksum * 31 + (unsigned long)v;
	t->calls++;
	if (do_print && t->id == 0)
		printf("%s(%ld) = %ld\n", fn, i, v);
}

static void *worker(void *p)
{
	struct thread_arg *t = p;
	for (long i = 0; i < n_calls; i++) {
		long a = i + t->id * 1000;
		if (do_signal && t->id == 0 && i == n_calls / 2)
			raise(SIGUSR1);
		if (dl_path && t->id == 0 && i == n_calls / 2)
			call_dl();
		if (wanted("tk_empty"))
			record(t, "tk_empty", i, tk_empty(a, 2));
		if (wanted("tk_riprel"))
			record(t, "tk_riprel", i, tk_riprel(a));
		if (wanted("tk_lea"))
			record(t, "tk_lea", i, tk_lea(a, 5));
		if (wanted("tk_call"))
			record(t, "tk_call", i, tk_call(a));
		if (wanted("tk_jmp"))
			record(t, "tk_jmp", i, tk_jmp(a));
		if (wanted("tk_jcc"))
			record(t, "tk_jcc", i, tk_jcc_entry(a));
		if (wanted("tk_push"))
			record(t, "tk_push", i, tk_push(a, 7));
	}
	if (only == NULL || wanted("tk_sleep_1ms"))
		for (long i = 0; i < n_sleeps; i++)
			record(t, "tk_sleep_1ms", i, tk_sleep_1ms());
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: probe-target [--threads T] [--only FUNC] [--sleep S] [--print] "
			"[--exit CODE] [--signal] [--wait-stdin] [--fork] [--vfork] [--dlopen LIB] N\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long threads = 1;
	int exit_code = 0, wait_stdin = 0, do_fork = 0, do_vfork = 0;
	int i;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atol(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--sleep") && i + 1 < argc)
			n_sleeps = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exit") && i + 1 < argc)
			exit_code = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--print"))
			do_print = 1;
		else if (!strcmp(argv[i], "--signal"))
			do_signal = 1;
		else if (!strcmp(argv[i], "--wait-stdin"))
			wait_stdin = 1;
		else if (!strcmp(argv[i], "--fork"))
			do_fork = 1;
		else if (!strcmp(argv[i], "--dlopen") && i + 1 < argc)
			dl_path = argv[++i];
		else if (!strcmp(argv[i], "--vfork"))
			do_vfork = 1;
		else if (argv[i][0] == '-')
			usage();
		else
			break;
	}
	if (i != argc - 1 || threads < 1 || threads > 64)
		usage();
	n_calls = atol(argv[i]);

	signal(SIGUSR1, on_usr1);
	if (wait_stdin) {
		char c;
		if (read(0, &c, 1) < 0)
			perror("read");
	}

	if (do_vfork) {
		fflush(stdout);
		pid_t pid = vfork();
		if (pid == 0) {
			tk_empty(1, 2);
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		printf("vfork child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	if (do_fork) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			struct thread_arg c = { 0, 0, 0 };
			worker(&c);
			printf("child checksum %lu\n", c.checksum);
			fflush(stdout);
			_exit(0);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}

	struct thread_arg args[64];
	pthread_t tids[64];
	memset(args, 0, sizeof(args));
	for (long t = 0; t < threads; t++) {
		args[t].id = t;
		if (t > 0 && pthread_create(&tids[t], NULL, worker, &args[t]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	worker(&args[0]);
	unsigned long total = 0;
	long calls = 0;
	for (long t = 0; t < threads; t++) {
		if (t > 0)
			pthread_join(tids[t], NULL);
		printf("thread %ld checksum %lu\n", t, args[t].checksum);
		total = total * 31 + args[t].checksum;
		calls += args[t].calls;
	}
	if (do_signal)
		printf("got SIGUSR1: %d\n", (int)got_usr1);
	if (dl_path)
		printf("dlopen checksum %lu\n", dl_sum);
	printf("total calls %ld checksum %lu\n", calls, total);
	fflush(stdout);
	return exit_code;
}
