# The SIGTRAP handler tracekit's ptrace engine injects into every process it probes
# (x86-64). It only ever runs once the tracer is gone: while tracekit traces the process,
# every SIGTRAP is reported to tracekit first, which suppresses its own. Position
# independent: it finds its tables at fixed offsets from its own first byte.
#
#   rdi = signal number, rsi = siginfo_t *, rdx = ucontext_t *
#
# After a change, regenerate the bytes of `CODE` in area.rs: `python3 tools/rescue-handler.py`
# in crates/tracekit-probe (as --64, objcopy -O binary -j .text). CI checks they match.
        .intel_syntax noprefix
        .set PATH, 0x400
        .set NPOINTS, 0x440
        .set TRAMP, 0x448
        .set NRET, 0x450
        .set ORIG_ACT, 0x460
        .set POINTS, 0x1000
        .set RETURNS, 0x11000
        .set MAGIC, 0x746b7274
        .set UC_RSP, 160
        .set UC_RIP, 168
        .set UC_EFL, 176
        .set UC_GREGS, 40
        .set STUB, 0x3f0
        .set SAVED_VALID, 0x4a0
        .set SAVED, 0x4a8
        .text
handler:
        lea r15, [rip + handler]
        mov r8, [rdx + UC_RIP]
        mov r9, [rdx + UC_RSP]
        lea rax, [r15 + STUB]                   # in the injection stub (syscall; int3; int3)
        mov rcx, r8                             # with an injection under way: the tracer
        sub rcx, rax                            # died during it; the thread's own registers
        cmp rcx, 4                              # were saved first (in ucontext order)
        ja 5f
        cmp qword ptr [r15 + SAVED_VALID], 0
        je 5f
        lea rsi, [r15 + SAVED]
        lea rdi, [rdx + UC_GREGS]
        mov ecx, 18
        rep movsq
        ret
5:      mov eax, [rsi + 8]                      # a single step left on by a tracer that
        dec eax                                 # died: TRAP_TRACE (2) after an instruction,
        cmp eax, 1                              # TRAP_BRKPT (1) at every system call's exit
        ja 6f                                   # (the kernel keeps that on until a tracer
        and qword ptr [rdx + UC_EFL], -0x101    # clears it); the step is done
        ret
6:      cmp dword ptr [rsi + 8], 0x80           # si_code: SI_KERNEL (an int3)?
        jne foreign
        cmp dword ptr [rsi + 4], MAGIC          # marked by the tracer when it took the trap?
        jne fresh
        cmp r8, [rsi + 16]                      # registers changed since: the tracer had
        jne done                                # handled it; go on from where it left
        cmp r9, [rsi + 24]
        jne done
fresh:
        lea r10, [r8 - 1]                       # the int3's address
        mov rcx, [r15 + NPOINTS]
        lea rbx, [r15 + POINTS]
1:      test rcx, rcx
        jz not_point
        cmp [rbx], r10
        je point
        add rbx, 24
        dec rcx
        jmp 1b
point:                                          # { addr, resume pc, 0x100 | original byte }
        mov rax, [rbx + 8]
        mov [rdx + UC_RIP], rax
        mov r14, [rbx + 16]
        bt r14, 8
        jnc done
        mov r13, r10
        push r14                                # the original byte, at [rsp]
        mov rdi, -100                           # openat(AT_FDCWD, "/proc/self/mem",
        lea rsi, [r15 + PATH]                   #        O_RDWR | O_CLOEXEC)
        mov edx, 0x80002
        mov eax, 257
        syscall
        test rax, rax
        js direct
        mov rbx, rax
        mov rdi, rax                            # pwrite64(fd, &byte, 1, addr)
        mov rsi, rsp
        mov edx, 1
        mov r10, r13
        mov eax, 18
        syscall
        mov r12, rax
        mov rdi, rbx                            # close(fd)
        mov eax, 3
        syscall
        cmp r12, 1
        je restored
direct:                                         # no /proc/self/mem: make the page writable
        mov rdi, r13
        and rdi, -4096
        mov esi, 4096
        mov edx, 7                              # PROT_READ | PROT_WRITE | PROT_EXEC
        mov eax, 10                             # mprotect
        syscall
        test rax, rax
        jnz failed
        mov [r13], r14b
restored:
        pop rax
done:
        ret
failed:
        pop rax
foreign:                                        # not ours: as if this handler did not exist
        mov edi, 5                              # rt_sigaction(SIGTRAP, &orig, NULL, 8)
        lea rsi, [r15 + ORIG_ACT]
        xor edx, edx
        mov r10d, 8
        mov eax, 13
        syscall
        mov eax, 39                             # getpid
        syscall
        mov rbx, rax
        mov eax, 186                            # gettid
        syscall
        mov rdi, rbx                            # tgkill(pid, tid, SIGTRAP): delivered with
        mov rsi, rax                            # the original disposition once this returns
        mov edx, 5
        mov eax, 234
        syscall
        ret
not_point:
        mov rax, [r15 + TRAMP]
        test rax, rax
        jz foreign
        cmp r10, rax                            # the trampoline's int3, or the one after
        je 3f                                   # it (a thread stopped at the first when
        inc rax                                 # its tracer died resumes there)
        cmp r10, rax
        jne foreign
3:      lea r11, [r9 - 8]                       # the return address's stack slot
        mov rcx, [r15 + NRET]
        lea rbx, [r15 + RETURNS]
2:      test rcx, rcx
        jz foreign
        cmp [rbx], r11
        je ret_found
        add rbx, 16
        dec rcx
        jmp 2b
ret_found:                                      # { stack slot, real return address }
        mov rax, [rbx + 8]
        mov [rdx + UC_RIP], rax
        ret
        .org 0x1e0
restorer:
        mov eax, 15                             # rt_sigreturn
        syscall
        .org STUB
stub:                                           # where system calls are injected once the
        syscall                                 # area exists (no code of the program is
        int3                                    # touched, and the handler recognises it)
        int3
