//! Kernel function probes (`kprobe:FUNC`): what this kernel offers for them.
//!
//! A kernel function can be probed with a kprobe (needs CONFIG_KPROBES) or with a BPF
//! trampoline (fentry/fexit: needs BTF and trampoline support, and the lockdown/LSM policy to
//! allow tracing programs). This module finds out which exists and, when neither does, says
//! exactly what is missing and what works instead.

use std::path::Path;

/// Why kernel functions cannot be probed here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot probe kernel function for `{spec}`: {reasons}. \
     For system calls use `tracekit trace summary` (tracepoints); for user functions use uprobes \
     (uprobe:BINARY:SYMBOL)"
)]
pub struct KernelProbeError {
    /// The spec.
    pub spec: String,
    /// What is missing, for kprobes and for fentry.
    pub reasons: String,
}

/// Whether the kernel has kprobes (the `kprobe` perf PMU exists only with CONFIG_KPROBES).
pub fn has_kprobes() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

/// What stands in the way of an fentry program, if anything: no kernel BTF, or the kernel
/// refusing to load a tracing program.
pub fn fentry_problem() -> Option<String> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some(
            "no kernel BTF (/sys/kernel/btf/vmlinux), needed for fentry trampolines".into(),
        );
    }
    probe_fentry_load().err()
}

/// Loads a minimal fentry program (on a function every kernel has) to ask the kernel.
fn probe_fentry_load() -> Result<(), String> {
    use aya::programs::FEntry;
    use aya::{Btf, EbpfLoader};
    static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bpf/obj/uprobe_fentry.bpf.o"
    ));
    let btf = Btf::from_sys_fs().map_err(|e| format!("cannot read kernel BTF: {e}"))?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(OBJECT)
        .map_err(|e| e.to_string())?;
    let prog: &mut FEntry = ebpf
        .program_mut("tk_fentry")
        .expect("program in object")
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    match prog
        .load("security_file_open", &btf)
        .or_else(|_| prog.load("vfs_read", &btf))
    {
        Ok(()) => Ok(()),
        Err(e) => {
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>()
                    && io.raw_os_error() == Some(libc::EPERM)
                {
                    return Err(
                        "fentry programs are refused by this kernel (EPERM: no BPF trampolines, \
                                or tracing locked down)"
                            .into(),
                    );
                }
                src = s.source();
            }
            Err(format!(
                "fentry load failed ({})",
                tracekit_core::errors::chain(&e)
            ))
        }
    }
}

/// The error for a kernel probe on this kernel, naming what is missing for each mechanism.
pub fn unavailable(spec: &str) -> KernelProbeError {
    let mut reasons = Vec::new();
    if !has_kprobes() {
        reasons.push("this kernel has no kprobes (CONFIG_KPROBES is off: no /sys/bus/event_source/devices/kprobe)".to_string());
    }
    if let Some(p) = fentry_problem() {
        reasons.push(p);
    }
    if reasons.is_empty() {
        reasons.push("kernel function probes are not implemented in this tracekit build".into());
    }
    KernelProbeError {
        spec: spec.into(),
        reasons: reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine (and CI) has neither kprobes nor working fentry: the error names both.
    #[test]
    fn kernel_probe_error_names_what_is_missing() {
        let e = unavailable("kprobe:vfs_read");
        let text = e.to_string();
        assert!(!has_kprobes());
        assert!(text.contains("CONFIG_KPROBES"), "{text}");
        assert!(text.contains("fentry"), "{text}");
        assert!(text.contains("tracekit trace summary"), "{text}");
    }
}
