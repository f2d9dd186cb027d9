//! The dynamic loader's hook (glibc's `r_brk`): probes in libraries loaded later are placed
//! when the loader reports a change.

use super::*;

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    /// Sets the loader breakpoint while some probe is not placed in `pid`, removes it once
    /// every probe is. Failing to find the loader only costs `dlopen` support: a warning.
    pub(super) fn update_loader_hook(&mut self, pid: i32) {
        let proc = self.procs.get_mut(&pid).expect("known process");
        let missing = proc.inst.points.iter().any(Option::is_none);
        match (&proc.loader, missing) {
            (None, true) => match find_loader_hook(&mut proc.mem, pid) {
                Ok(Some(hook)) => {
                    let w = &mut self.warnings;
                    if super::rescue::arm_bytes(proc, pid, w, hook.addr, &hook.orig).is_ok() {
                        proc.loader = Some(hook);
                    }
                }
                Ok(None) => {} // statically linked: nothing will ever be loaded
                Err(e) => self.warnings.push(format!(
                    "cannot watch the dynamic loader of {pid} ({e}); probes in libraries \
                     loaded later with dlopen will not be placed"
                )),
            },
            (Some(hook), false) => {
                let _ = proc.mem.write(hook.addr, &hook.orig);
                proc.loader = None;
            }
            _ => {}
        }
    }

    /// The loader changed the list of objects: once it is consistent again, stop every
    /// thread, place what is now mapped, and let everyone go.
    pub(super) fn on_loader(
        &mut self,
        tid: i32,
        tgid: i32,
        mut regs: <A as Arch>::Regs,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
        let sys = |source| BreakpointError::Sys {
            what: "following the dynamic loader",
            pid: tid,
            error: source,
        };
        let proc = self.procs.get_mut(&tgid).expect("known process");
        let hook = proc.loader.clone().expect("checked by the caller");
        A::simulate(&hook.insn, &mut regs, &mut proc.mem).map_err(sys)?;
        proc.mem.set_regs(tid, &regs).map_err(sys)?;
        // struct r_debug { int r_version; link_map *r_map; ElfW(Addr) r_brk; r_state; ... }
        let state = proc.mem.read_u64(hook.r_debug + 24).map_err(sys)? as u32;
        const RT_CONSISTENT: u32 = 0;
        if state != RT_CONSISTENT || self.holding {
            return Ok(());
        }
        self.stop_all(on_hit)?;
        let result = self.install(tgid);
        self.resume_held(tid)?;
        result
    }

    /// Resumes every thread `stop_all` held, except `except` (resumed by the caller).
    pub(super) fn resume_held(&mut self, except: i32) -> Result<(), BreakpointError> {
        let held: Vec<(i32, i32, bool)> = self
            .threads
            .iter_mut()
            .filter(|(t, th)| **t != except && th.stopped)
            .map(|(&t, th)| (t, std::mem::take(&mut th.pending_sig), th.group_stop))
            .collect();
        for (t, sig, group_stop) in held {
            if group_stop {
                // SAFETY: PTRACE_LISTEN on a tracee in group-stop; no pointers.
                unsafe { libc::ptrace(libc::PTRACE_LISTEN, t, 0, 0) };
                self.threads.get_mut(&t).expect("listed").stopped = false;
            } else {
                self.resume(t, sig)?;
            }
        }
        Ok(())
    }
}

/// The loader's `r_brk` (`_dl_debug_state`) and `r_debug` (`_r_debug`) from the loader's own
/// dynamic symbols, at the base the kernel mapped it (AT_BASE), right after exec: before the
/// loader has filled the program's `DT_DEBUG`. `None` for a program without an interpreter.
pub(super) fn startup_hook<A: Arch>(
    mem: &mut PtraceTarget,
    pid: i32,
) -> io::Result<Option<LoaderHook<A>>> {
    use object::{Object, ObjectSymbol};
    let base = read_auxv(pid, libc::AT_BASE)?;
    if base == 0 {
        return Ok(None);
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let Some(path) = maps.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let start = u64::from_str_radix(fields.first()?.split('-').next()?, 16).ok()?;
        (start == base).then(|| fields.get(5).map(std::path::PathBuf::from))?
    }) else {
        return Ok(None);
    };
    let data = std::fs::read(&path)?;
    let file = object::File::parse(&*data).map_err(io::Error::other)?;
    let symbol = |name: &str| {
        file.dynamic_symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| base + s.address())
    };
    let (Some(addr), Some(r_debug)) = (symbol("_dl_debug_state"), symbol("_r_debug")) else {
        return Ok(None);
    };
    let mut code = vec![0u8; A::MAX_INSN_LEN];
    mem.read(addr, &mut code)?;
    let Some(insn) = A::decode(&code, addr).filter(A::can_simulate) else {
        return Ok(None);
    };
    Ok(Some(LoaderHook {
        r_debug,
        addr,
        orig: code[..super::rescue::patch_len::<A>(&insn, &code)].to_vec(),
        insn,
    }))
}

/// Finds glibc's `r_debug` through the program's `DT_DEBUG` entry (AT_PHDR, then PT_DYNAMIC,
/// in memory) and the loader's `r_brk` in it. `None` for a program without a dynamic section.
pub(super) fn find_loader_hook<A: Arch>(
    mem: &mut PtraceTarget,
    pid: i32,
) -> io::Result<Option<LoaderHook<A>>> {
    const PT_DYNAMIC: u32 = 2;
    const PT_PHDR: u32 = 6;
    const DT_DEBUG: u64 = 21;
    let phdr = read_auxv(pid, libc::AT_PHDR)?;
    let phnum = read_auxv(pid, libc::AT_PHNUM)?;
    let mut headers = vec![0u8; 56 * phnum as usize];
    mem.read(phdr, &mut headers)?;
    let field = |h: &[u8], off: usize| u64::from_le_bytes(h[off..off + 8].try_into().expect("8"));
    let kind = |h: &[u8]| u32::from_le_bytes(h[..4].try_into().expect("4"));
    let phdrs: Vec<&[u8]> = headers.chunks_exact(56).collect();
    // Load bias: where the headers are minus where the file says they are (0 if not PIE).
    let bias = phdrs
        .iter()
        .find(|h| kind(h) == PT_PHDR)
        .map_or(0, |h| phdr.wrapping_sub(field(h, 16)));
    let Some(dynamic) = phdrs.iter().find(|h| kind(h) == PT_DYNAMIC) else {
        return Ok(None);
    };
    let (start, size) = (bias.wrapping_add(field(dynamic, 16)), field(dynamic, 40));
    let mut r_debug = 0;
    for k in 0..size / 16 {
        match mem.read_u64(start + 16 * k)? {
            DT_DEBUG => {
                r_debug = mem.read_u64(start + 16 * k + 8)?;
                break;
            }
            0 => break,
            _ => {}
        }
    }
    if r_debug == 0 {
        return Ok(None);
    }
    let addr = mem.read_u64(r_debug + 16)?;
    let mut code = vec![0u8; A::MAX_INSN_LEN];
    mem.read(addr, &mut code)?;
    let Some(insn) = A::decode(&code, addr).filter(A::can_simulate) else {
        return Err(io::Error::other(
            "the loader's r_brk starts with an instruction the engine does not simulate",
        ));
    };
    let orig = code[..super::rescue::patch_len::<A>(&insn, &code)].to_vec();
    Ok(Some(LoaderHook {
        r_debug,
        addr,
        orig,
        insn,
    }))
}
