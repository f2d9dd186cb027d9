//! The jump engine (`probe --engine jump`): x86-64 probes without a trap per hit, the kernel's
//! optprobe design in user space, placed from outside the target with ptrace.
//!
//! Per probe point, the first whole instructions covering at least 5 bytes (the *displaced*
//! instructions) are replaced by a `jmp rel32` to a trampoline mapped within ±2 GiB. The
//! trampoline counts the hit with a `lock inc` on a counter in a *shared area*, runs the
//! displaced instructions relocated ([`iced_x86::BlockEncoder`] re-encodes RIP-relative
//! operands and branches), and jumps back after them. No thread ever stops for a hit.
//!
//! - [`analyze`] decides whether a point can take a jump, as the kernel's `can_optimize`
//!   does: the whole function is decoded, and a branch into the displaced bytes, an indirect
//!   jump (possibly through a table), or fewer than 5 bytes of instructions before the
//!   function's end sends the probe to the int3 engine, with the reason shown.
//! - [`area`] is the shared area's layout: a memfd that tracekit maps and that the target maps
//!   too (the target is made to `openat("/proc/<tracekit>/fd/<n>")` and `mmap(MAP_SHARED)`
//!   it with injected system calls), so tracekit reads the counts live without stopping
//!   anyone.
//! - [`tramp`] builds the trampolines. A return probe's entry trampoline replaces the return
//!   address with its return trampoline's and pushes the real one and an `rdtsc` timestamp
//!   on the thread's return stack in the shared area: found by the thread's FS base
//!   (`rdfsbase`, no syscall), keyed per frame by the stack pointer at entry, owned by its
//!   thread (no lock after the first `lock cmpxchg` that claims it). The return trampoline
//!   pops the frame (dropping frames abandoned by longjmp), records the latency (TSC cycles
//!   converted to ns with a multiplier calibrated by tracekit, see [`clock`]) and jumps to
//!   the real return address.
//!
//! Safety of patching: every thread of the process is in a ptrace stop while bytes change,
//! and no thread's pc stays inside the displaced bytes: a thread stopped at a displaced
//! instruction after the first is moved to its copy in the trampoline (one stopped in a
//! `syscall` there restarts it from the copy, which directly precedes the copy of the next
//! instruction), or the point falls back to int3. The bytes are written in the kernel's `text_poke_bp` order (an int3
//! on the first byte, then the other bytes, then the first byte), so even a thread that ran
//! concurrently would see either the old instruction, a breakpoint, or the whole jump, never
//! a torn one. Displaced instructions may contain a `call` only as the last one (it is
//! relocated as a push of the original return address and a jump, so no return address ever
//! points into the patched bytes, and the callee sees the same return address).
//!
//! Forks and exec (`transport::ptrace`'s session): a followed fork child gets a new memfd
//! mapped over its copy of the shared area (its hits are its own), a child that is not
//! followed gets the original bytes back and a private copy of the area (the return table
//! included, so that a return hijacked before the fork still finds its entry); after exec
//! the points are placed again in the new image, counting on in the same area.
//!
//! Detach and SIGKILL: detach writes the original bytes back (same order, all threads
//! stopped) and leaves the trampolines and the shared area mapped: a thread may be inside a
//! trampoline or return through a hijacked return address later, and both keep working
//! because trampolines need no tracer. For the same reason, if tracekit is killed with
//! SIGKILL the program keeps running correctly with the jumps in place: they land in valid
//! trampolines that count into an area nobody reads any more.

pub mod analyze;
pub mod area;
pub mod clock;
pub mod tramp;

pub use analyze::{PointPlan, analyze, plan};
