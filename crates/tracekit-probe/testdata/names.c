/* Symbols that are not plain C functions, for the symbol-layer tests.
 *
 *   names N    calls tk_asm_untyped N times (an assembly routine with no .type and no .size,
 *              so its symbol is STT_NOTYPE of size 0), and strlen N times through a pointer
 *              (glibc's strlen is an IFUNC: the calls go to the implementation the dynamic
 *              loader picked for this CPU, never to the resolver); tk_ctor_target is called
 *              once by a constructor, before main, and N times by main.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__asm__(".text\n"
        ".globl tk_asm_untyped\n"
        "tk_asm_untyped:\n"
        "    mov $42, %eax\n"
        "    ret\n");
int tk_asm_untyped(void);

/* Never called (it needs AVX-512): an AVX-512 (EVEX) first instruction, as glibc's
 * __strchr_evex has, which the BPF engine refuses to place a kernel uprobe on. */
__asm__(".text\n"
        ".globl tk_asm_evex\n"
        ".type tk_asm_evex, @function\n"
        "tk_asm_evex:\n"
        "    vpbroadcastb %esi, %ymm17\n"
        "    ret\n"
        ".size tk_asm_evex, .-tk_asm_evex\n");

__attribute__((noinline)) int tk_ctor_target(int x)
{
    __asm__ volatile("" : "+r"(x));
    return x + 1;
}

static int from_constructor;
__attribute__((constructor)) static void before_main(void)
{
    from_constructor = tk_ctor_target(0);
}

int main(int argc, char **argv)
{
    size_t (*volatile measure)(const char *) = strlen;
    long n = argc > 1 ? atol(argv[1]) : 1, sum = 0;
    for (long i = 0; i < n; i++) {
        sum += tk_asm_untyped();
        sum += (long)measure(argv[0]);
        sum += tk_ctor_target((int)i);
    }
    sum += from_constructor;
    printf("%ld\n", sum);
    return 0;
}
