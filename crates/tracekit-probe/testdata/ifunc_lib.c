/* A library with an IFUNC `tk_ifunc`, for the helper process that learns which implementation
 * the loader picks. Its constructor records who runs it (-DUID_FILE="path") or forks a child
 * that outlives it and holds every inherited descriptor (-DFORK_AND_LINGER). */
#include <stdio.h>
#include <unistd.h>

static int tk_ifunc_impl(void) { return 42; }

static int (*tk_ifunc_resolver(void))(void) { return tk_ifunc_impl; }

int tk_ifunc(void) __attribute__((ifunc("tk_ifunc_resolver")));

__attribute__((constructor)) static void tk_ctor(void) {
#ifdef UID_FILE
    FILE *f = fopen(UID_FILE, "w");
    if (f) {
        fprintf(f, "%u\n", (unsigned)getuid());
        fclose(f);
    }
#endif
#ifdef FORK_AND_LINGER
    if (fork() == 0)
        sleep(30);
#endif
}
