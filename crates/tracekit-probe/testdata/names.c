/* Symbols that are not plain C functions, for the symbol-layer tests.
 *
 *   names N    calls tk_asm_untyped N times (an assembly routine with no .type and no .size,
 *              so its symbol is STT_NOTYPE of size 0), and strlen N times through a pointer
 *              (glibc's strlen is an IFUNC: the calls go to the implementation the dynamic
 *              loader picked for this CPU, never to the resolver).
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

int main(int argc, char **argv)
{
    size_t (*volatile measure)(const char *) = strlen;
    long n = argc > 1 ? atol(argv[1]) : 1, sum = 0;
    for (long i = 0; i < n; i++) {
        sum += tk_asm_untyped();
        sum += (long)measure(argv[0]);
    }
    printf("%ld\n", sum);
    return 0;
}
