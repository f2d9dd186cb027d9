/*
 * la-oracle: runs LoongArch64 instruction cases natively (under qemu-loongarch64-static) and
 * reports the machine state each one ends in, for tracekit's differential tests of its
 * instruction simulation. Freestanding: no libc, raw syscalls only.
 *
 * Build:  tracekit_probe::testdata::compile_loongarch("loongarch/oracle.c", "la-oracle")
 * Usage:  qemu-loongarch64-static la-oracle < cases.bin > outcomes.bin
 * Rust side: crates/tracekit-probe/src/testdata/loongarch.rs (keep both layouts in step).
 *
 * Memory: CODE   0x10_0000_0000, 1 MiB, RWX, filled with `break 1` (0x002a0001);
 *         SCRATCH 0x20_0000_0000, 64 KiB, RW, byte i = (i*131 + 7) & 0xff before every case.
 *
 * Input (stdin, little-endian):
 *   header, 24 bytes: u32 magic 0x324f414c ("LAO2"), u32 count, u32 timeout_ms (CPU time
 *                     a case may run; 0 = unlimited), u32 reserved = 0, u64 payload_len
 *                     (bytes of case records that follow).
 *   count case records, each 8-aligned in size:
 *     u64 at, u64 pc, u64 regs[32], u64 fregs[32] (f0..f31), u32 nwords,
 *     u32 fcc (bit i = fcc i, bits 8.. = 0),
 *     u32 words[nwords], then 4 zero bytes if nwords is odd.
 *   `at` is 4-aligned and [at, at + 4*nwords) lies inside CODE. regs[0] is ignored.
 * Output (stdout, little-endian):
 *   header, 16 bytes: u32 magic 0x3252414c ("LAR2"), u32 count, u64 reserved = 0.
 *   count outcome records, 544 bytes each:
 *     i32 signal, u32 reserved = 0, u64 pc, u64 regs[32], u64 scratch_hash (FNV-1a 64 of
 *     SCRATCH), u64 fregs[32], u32 fcc (bit i = fcc i), u32 fcsr.
 *   A case that used up its CPU time ends with SIGVTALRM (26); its pc/regs are wherever it was.
 * Errors: a message on stderr and exit status 2 (bad input) or 3 (environment).
 *
 * How a case runs: everything happens in one signal handler (SA_SIGINFO|SA_ONSTACK, on an
 * alternate stack) for SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS and SIGVTALRM. The
 * first `break` in main enters it; each later signal ends the running case: the handler
 * records signal, sc_pc, sc_regs and the SCRATCH hash, puts the filler back over the case's
 * words, writes the next case's words, refills SCRATCH, writes the case's registers, pc and
 * fcc into the signal frame and returns, so rt_sigreturn starts the case with exactly that
 * state. FP registers f0..f31 come from the case, fcsr starts at 0.
 *
 * Signal frame layout of QEMU 7.2 linux-user loongarch64, measured (see the Rust module's
 * docs): ucontext: uc_flags@0, uc_link@8, uc_stack@16 (24 bytes), uc_sigmask@40, then
 * uc_mcontext (struct sigcontext) @176: sc_pc@176, sc_regs[32]@184, sc_flags@440 (1),
 * sc_extcontext@448. The first extcontext record is the FPU one: {u32 magic 0x46505501,
 * u32 size (0x250), u64 pad} then u64 f[32]@+16, u64 fcc@+272 (fcc i in byte i, 0 or 1),
 * u32 fcsr@+280. sigreturn restores all of these.
 */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef int i32;
typedef unsigned char u8;

#define CODE_BASE 0x1000000000UL
#define CODE_SIZE 0x100000UL
#define SCRATCH_BASE 0x2000000000UL
#define SCRATCH_SIZE 0x10000UL
#define FILLER 0x002a0001u /* break 1 */

#define IN_MAGIC 0x324f414cu /* "LAO2" */
#define OUT_MAGIC 0x3252414cu /* "LAR2" */
#define IN_HEADER 24
#define OUT_HEADER 16
#define CASE_FIXED (8 + 8 + 256 + 256 + 4 + 4)
#define OUTCOME_SIZE 544

#define UC_SC_PC 176
#define UC_SC_REGS 184
#define UC_SC_EXTCONTEXT 448
#define EXTCONTEXT_SCAN 4096
#define FPU_CTX_MAGIC 0x46505501u
#define FPU_REGS 16
#define FPU_FCC 272
#define FPU_FCSR 280

#define NR_read 63
#define NR_write 64
#define NR_exit_group 94
#define NR_getitimer 102
#define NR_setitimer 103
#define NR_sigaltstack 132
#define NR_rt_sigaction 134
#define NR_mmap 222

#define SIGILL 4
#define SIGTRAP 5
#define SIGBUS 7
#define SIGFPE 8
#define SIGSEGV 11
#define SIGVTALRM 26
#define SIGSYS 31
#define SA_SIGINFO 4UL
#define SA_ONSTACK 0x08000000UL
#define ITIMER_VIRTUAL 1

#define PROT_RW 3
#define PROT_RWX 7
#define MAP_PRIVATE_ANON 0x22
#define MAP_FIXED_NOREPLACE 0x100000
#define ALTSTACK_SIZE 0x40000UL

static i64 syscall6(i64 nr, i64 x0, i64 x1, i64 x2, i64 x3, i64 x4, i64 x5) {
    register i64 a7 __asm__("$a7") = nr;
    register i64 a0 __asm__("$a0") = x0;
    register i64 a1 __asm__("$a1") = x1;
    register i64 a2 __asm__("$a2") = x2;
    register i64 a3 __asm__("$a3") = x3;
    register i64 a4 __asm__("$a4") = x4;
    register i64 a5 __asm__("$a5") = x5;
    __asm__ volatile("syscall 0"
                     : "+r"(a0)
                     : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5)
                     : "$t0", "$t1", "$t2", "$t3", "$t4", "$t5", "$t6", "$t7", "$t8", "memory");
    return a0;
}

static i64 syscall3(i64 nr, i64 x0, i64 x1, i64 x2) { return syscall6(nr, x0, x1, x2, 0, 0, 0); }

/* The compiler may turn loops or struct copies into calls to these. */
void *memset(void *dst, int c, u64 n) {
    u8 *d = dst;
    for (u64 i = 0; i < n; i++) d[i] = (u8)c;
    return dst;
}

void *memcpy(void *dst, const void *src, u64 n) {
    u8 *d = dst;
    const u8 *s = src;
    for (u64 i = 0; i < n; i++) d[i] = s[i];
    return dst;
}

static u64 cstrlen(const char *s) {
    u64 n = 0;
    while (s[n]) n++;
    return n;
}

static void write_all(int fd, const u8 *buf, u64 len) {
    while (len > 0) {
        i64 n = syscall3(NR_write, fd, (i64)buf, (i64)len);
        if (n <= 0) syscall3(NR_exit_group, 3, 0, 0);
        buf += n;
        len -= (u64)n;
    }
}

__attribute__((noreturn)) static void die(int status, const char *what, u64 value) {
    static const char hex[] = "0123456789abcdef";
    char num[19];
    num[0] = '0';
    num[1] = 'x';
    for (int i = 0; i < 16; i++) num[2 + i] = hex[(value >> (60 - 4 * i)) & 15];
    num[18] = '\n';
    write_all(2, (const u8 *)"la-oracle: ", 11);
    write_all(2, (const u8 *)what, cstrlen(what));
    write_all(2, (const u8 *)": ", 2);
    write_all(2, (const u8 *)num, sizeof num);
    syscall3(NR_exit_group, status, 0, 0);
    __builtin_unreachable();
}

/* Reads exactly len bytes; a short input is bad input. */
static void read_exact(u8 *buf, u64 len) {
    while (len > 0) {
        i64 n = syscall3(NR_read, 0, (i64)buf, (i64)len);
        if (n <= 0) die(2, "stdin ended early, bytes missing", len);
        buf += n;
        len -= (u64)n;
    }
}

static void *map(u64 addr, u64 len, int prot, int extra_flags) {
    i64 r = syscall6(NR_mmap, (i64)addr, (i64)len, prot, MAP_PRIVATE_ANON | extra_flags, -1, 0);
    if (r < 0 && r > -4096) die(3, "mmap failed, errno", (u64)-r);
    /* QEMU 7.2 treats MAP_FIXED_NOREPLACE as a hint: a taken range gives another address. */
    if (addr && (u64)r != addr) die(3, "fixed region already taken", addr);
    return (void *)r;
}

struct case_rec {
    u64 at;
    u64 pc;
    u64 regs[32];
    u64 fregs[32];
    u32 nwords;
    u32 fcc;
    u32 words[];
};

struct outcome {
    i32 signal;
    u32 reserved;
    u64 pc;
    u64 regs[32];
    u64 scratch_hash;
    u64 fregs[32];
    u32 fcc;
    u32 fcsr;
};

_Static_assert(sizeof(struct outcome) == OUTCOME_SIZE, "OUTCOME_SIZE is the wire size of struct outcome");
_Static_assert(sizeof(struct case_rec) == CASE_FIXED, "CASE_FIXED is the wire size of struct case_rec");

struct itimerval {
    i64 interval_sec, interval_usec, value_sec, value_usec;
};

static struct {
    u8 *cases;            /* the payload: case records back to back */
    u64 cases_len;
    u32 count;
    u32 timeout_ms;
    u32 next;             /* index of the next case to start */
    u64 cursor;           /* byte offset of the next case record */
    struct case_rec *running; /* the case in CODE now, or 0 */
    u8 *out;              /* output header + outcomes */
    u64 pattern[32];      /* SCRATCH's fill repeats every 256 bytes */
    u64 pristine_hash;
} st;

static u64 record_size(u32 nwords) { return CASE_FIXED + (((u64)nwords * 4 + 7) & ~7UL); }

static void validate_cases(void) {
    u64 off = 0;
    for (u32 i = 0; i < st.count; i++) {
        if (st.cases_len - off < CASE_FIXED) die(2, "payload too short for case", i);
        struct case_rec *c = (struct case_rec *)(st.cases + off);
        if (c->nwords > CODE_SIZE / 4 || st.cases_len - off < record_size(c->nwords))
            die(2, "payload too short for the words of case", i);
        if (c->at & 3) die(2, "case address not 4-aligned", c->at);
        if (c->at < CODE_BASE || c->at - CODE_BASE + (u64)c->nwords * 4 > CODE_SIZE)
            die(2, "case words outside CODE, at", c->at);
        if (c->fcc > 0xff) die(2, "fcc has bits above 7 in case", i);
        off += record_size(c->nwords);
    }
    if (off != st.cases_len) die(2, "payload longer than its cases, extra bytes", st.cases_len - off);
}

static void init_pattern(void) {
    u8 *p = (u8 *)st.pattern;
    for (u32 i = 0; i < 256; i++) p[i] = (u8)(i * 131 + 7);
}

static void fill_scratch(void) {
    volatile u64 *s = (volatile u64 *)SCRATCH_BASE;
    for (u64 i = 0; i < SCRATCH_SIZE / 8; i++) s[i] = st.pattern[i & 31];
}

static int scratch_pristine(void) {
    const volatile u64 *s = (const volatile u64 *)SCRATCH_BASE;
    for (u64 i = 0; i < SCRATCH_SIZE / 8; i++)
        if (s[i] != st.pattern[i & 31]) return 0;
    return 1;
}

static u64 fnv1a_scratch(void) {
    const volatile u8 *s = (const volatile u8 *)SCRATCH_BASE;
    u64 h = 0xcbf29ce484222325UL;
    for (u64 i = 0; i < SCRATCH_SIZE; i++) {
        h ^= s[i];
        h *= 0x100000001b3UL;
    }
    return h;
}

/* Returns the hash of SCRATCH as the case left it and leaves SCRATCH pristine again. */
static u64 take_scratch_hash(void) {
    if (scratch_pristine()) return st.pristine_hash;
    u64 h = fnv1a_scratch();
    fill_scratch();
    return h;
}

static void set_code(const struct case_rec *c, int filler) {
    volatile u32 *code = (volatile u32 *)c->at;
    for (u32 i = 0; i < c->nwords; i++) code[i] = filler ? FILLER : c->words[i];
    __asm__ volatile("ibar 0" ::: "memory");
}

static u8 *fpu_context(u8 *uc) {
    u8 *rec = uc + UC_SC_EXTCONTEXT;
    while (rec < uc + UC_SC_EXTCONTEXT + EXTCONTEXT_SCAN) {
        u32 magic = *(u32 *)rec, size = *(u32 *)(rec + 4);
        if (magic == FPU_CTX_MAGIC) return rec;
        if (magic == 0 || size < 16) break;
        rec += size;
    }
    die(3, "no FPU context in the signal frame; ucontext at", (u64)uc);
}

static void arm_timer(void) {
    if (!st.timeout_ms) return;
    struct itimerval t = {0, 0, st.timeout_ms / 1000, (st.timeout_ms % 1000) * 1000};
    syscall3(NR_setitimer, ITIMER_VIRTUAL, (i64)&t, 0);
}

/* A SIGVTALRM that expired while the handler ran arrives at the start of the next case: the
 * timer, already re-armed for that case, still has time left then. */
static int stale_timeout(void) {
    struct itimerval t;
    syscall3(NR_getitimer, ITIMER_VIRTUAL, (i64)&t, 0);
    return t.value_sec != 0 || t.value_usec != 0;
}

static void record(int sig, const u8 *uc) {
    struct outcome *o = (struct outcome *)(st.out + OUT_HEADER) + (st.next - 1);
    const u64 *regs = (const u64 *)(uc + UC_SC_REGS);
    o->signal = sig;
    o->reserved = 0;
    o->pc = *(const u64 *)(uc + UC_SC_PC);
    for (int i = 0; i < 32; i++) o->regs[i] = regs[i];
    o->scratch_hash = take_scratch_hash();
    const u8 *fpu = fpu_context((u8 *)uc);
    for (int i = 0; i < 32; i++) o->fregs[i] = ((const u64 *)(fpu + FPU_REGS))[i];
    u64 fcc = *(const u64 *)(fpu + FPU_FCC);
    o->fcc = 0;
    for (int i = 0; i < 8; i++) o->fcc |= (u32)((fcc >> (8 * i)) & 1) << i;
    o->fcsr = *(const u32 *)(fpu + FPU_FCSR);
}

static void start_case(u8 *uc) {
    struct case_rec *c = (struct case_rec *)(st.cases + st.cursor);
    u64 *regs = (u64 *)(uc + UC_SC_REGS);
    u8 *fpu = fpu_context(uc);
    st.cursor += record_size(c->nwords);
    st.next++;
    st.running = c;
    set_code(c, 0);
    *(u64 *)(uc + UC_SC_PC) = c->pc;
    regs[0] = 0;
    for (int i = 1; i < 32; i++) regs[i] = c->regs[i];
    for (int i = 0; i < 32; i++) ((u64 *)(fpu + FPU_REGS))[i] = c->fregs[i];
    u64 fcc = 0;
    for (int i = 0; i < 8; i++) fcc |= (u64)((c->fcc >> i) & 1) << (8 * i);
    *(u64 *)(fpu + FPU_FCC) = fcc;
    *(u32 *)(fpu + FPU_FCSR) = 0;
    arm_timer();
}

static void finish(void) {
    write_all(1, st.out, OUT_HEADER + (u64)st.count * OUTCOME_SIZE);
    syscall3(NR_exit_group, 0, 0, 0);
}

static void handler(int sig, void *info, void *ucv) {
    (void)info;
    u8 *uc = ucv;
    if (st.running) {
        if (sig == SIGVTALRM && stale_timeout()) return;
        record(sig, uc);
        set_code(st.running, 1);
        st.running = 0;
    }
    if (st.next == st.count) finish();
    start_case(uc);
}

struct kernel_sigaction {
    void *handler;
    u64 flags;
    u64 mask;
};

struct stack {
    void *sp;
    i32 flags;
    u64 size;
};

static void install_handler(void) {
    static const int signals[] = {SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGVTALRM};
    struct stack ss = {map(0, ALTSTACK_SIZE, PROT_RW, 0), 0, ALTSTACK_SIZE};
    if (syscall3(NR_sigaltstack, (i64)&ss, 0, 0) != 0) die(3, "sigaltstack failed", 0);
    /* Every signal stays blocked while the handler runs; sigreturn unblocks them. */
    struct kernel_sigaction sa = {(void *)handler, SA_SIGINFO | SA_ONSTACK, ~0UL};
    for (u64 i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (syscall6(NR_rt_sigaction, signals[i], (i64)&sa, 0, 8, 0, 0) != 0)
            die(3, "rt_sigaction failed for signal", (u64)signals[i]);
}

static void read_input(void) {
    u32 header[6];
    read_exact((u8 *)header, IN_HEADER);
    if (header[0] != IN_MAGIC) die(2, "bad input magic", header[0]);
    st.count = header[1];
    st.timeout_ms = header[2];
    st.cases_len = header[4] | (u64)header[5] << 32;
    if (st.cases_len) {
        st.cases = map(0, st.cases_len, PROT_RW, 0);
        read_exact(st.cases, st.cases_len);
    }
    validate_cases();
}

static void setup_memory(void) {
    volatile u32 *code = map(CODE_BASE, CODE_SIZE, PROT_RWX, MAP_FIXED_NOREPLACE);
    for (u64 i = 0; i < CODE_SIZE / 4; i++) code[i] = FILLER;
    __asm__ volatile("ibar 0" ::: "memory");
    map(SCRATCH_BASE, SCRATCH_SIZE, PROT_RW, MAP_FIXED_NOREPLACE);
    init_pattern();
    fill_scratch();
    st.pristine_hash = fnv1a_scratch();
    st.out = map(0, OUT_HEADER + (u64)st.count * OUTCOME_SIZE + 1, PROT_RW, 0);
    u32 *h = (u32 *)st.out;
    h[0] = OUT_MAGIC;
    h[1] = st.count;
}

__attribute__((noreturn, used)) void oracle_main(void) {
    read_input();
    setup_memory();
    if (st.count == 0) finish();
    install_handler();
    /* Enters the handler, which starts case 0; this context is never resumed. */
    __asm__ volatile("break 0" ::: "memory");
    die(3, "returned to main after the first break", 0);
}

/* The kernel starts us with sp 16-aligned and argc at sp; we need neither argv nor envp. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "  move $fp, $zero\n"
        "  move $ra, $zero\n"
        "  bstrins.d $sp, $zero, 3, 0\n"
        "  bl oracle_main\n"
        "  break 0\n");
