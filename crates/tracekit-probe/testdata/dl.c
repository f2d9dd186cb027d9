/*
 * libtk-dl.so: a library probe-target loads with dlopen (--dlopen PATH), to test probes in
 * libraries that are not mapped when tracing starts.
 *
 * Build:  gcc -O1 -g -shared -fPIC -o libtk-dl.so dl.c
 */
__attribute__((noinline)) long tk_dl_func(long a)
{
	__asm__ volatile("" ::: "memory");
	return 3 * a + 1;
}
