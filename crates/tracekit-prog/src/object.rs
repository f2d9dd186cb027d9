//! A BPF object file: its programs, and loading one of them into the kernel.

use crate::kind::ProgKind;
use crate::run::Program;
use crate::{Error, sys};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};
use serde::Serialize;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// One program of an object, as `tracekit prog list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramEntry {
    /// The function name, which is the program name.
    pub name: String,
    /// Its type, from the section name.
    pub kind: ProgKind,
    /// The ELF section, e.g. `xdp` or `raw_tp/sys_enter`.
    pub section: String,
    /// Number of BPF instructions (8 bytes each) before relocation.
    pub insns: u64,
    /// Whether the kernel has a test run for this type.
    pub test_run: bool,
}

/// A BPF ELF object (as built by `clang -target bpf`), kept in memory so that programs can
/// be loaded from it any number of times.
#[derive(Debug, Clone)]
pub struct BpfObject {
    what: String,
    bytes: Vec<u8>,
    programs: Vec<ProgramEntry>,
}

impl BpfObject {
    /// Reads and parses an object file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| Error::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes(path.display().to_string(), bytes)
    }

    /// Parses an object held in memory (e.g. from `include_bytes!`); `what` names it in errors.
    pub fn from_bytes(what: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let what = what.into();
        let bytes = bytes.into();
        if !bytes.starts_with(b"\x7fELF") {
            return Err(Error::NotElf { what });
        }
        let programs = list_programs(&bytes).map_err(|reason| Error::Parse {
            what: what.clone(),
            reason,
        })?;
        Ok(BpfObject {
            what,
            bytes,
            programs,
        })
    }

    /// The programs in the object, in file order.
    pub fn programs(&self) -> &[ProgramEntry] {
        &self.programs
    }

    /// Loads the program `name` into the kernel (without attaching it) for test runs.
    /// Maps of the object are created fresh for each load.
    pub fn load(&self, name: &str) -> Result<Program, Error> {
        let entry = self
            .programs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::NoSuchProgram {
                name: name.to_owned(),
                what: self.what.clone(),
                available: self
                    .programs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let (fd, ebpf) = match entry.kind {
            ProgKind::Syscall => (self.load_syscall(entry)?, None),
            _ => self
                .load_with_aya(entry)
                .map(|(fd, ebpf)| (fd, Some(ebpf)))?,
        };
        Ok(Program::new(
            entry.name.clone(),
            entry.kind.clone(),
            fd,
            ebpf,
        ))
    }

    fn load_with_aya(&self, entry: &ProgramEntry) -> Result<(OwnedFd, aya::Ebpf), Error> {
        let parse_err = |e: aya::EbpfError| Error::Parse {
            what: self.what.clone(),
            reason: tracekit_core::errors::chain(&e),
        };
        // Not `Ebpf::load`: it parses the kernel's BTF (/sys/kernel/btf/vmlinux, ~25 ms here)
        // twice, once in `EbpfLoader::new` and once more for its own `.btf(...)`.
        // Maps user space cannot use (task storage, ...) are still created for the program.
        let mut ebpf = aya::EbpfLoader::new()
            .allow_unsupported_maps()
            .load(&self.bytes)
            .map_err(parse_err)?;
        let program = ebpf.program_mut(&entry.name).ok_or_else(|| Error::Parse {
            what: self.what.clone(),
            reason: format!(
                "aya found no program '{}' in section '{}'",
                entry.name, entry.section
            ),
        })?;
        load_aya_program(program, entry)?;
        let fd = program.fd().map_err(|e| load_err(entry, &e))?;
        // A duplicate, so that `Program` owns its fd while `ebpf` stays available for maps.
        let fd = fd.as_fd().try_clone_to_owned().map_err(|e| Error::Load {
            name: entry.name.clone(),
            reason: e.to_string(),
        })?;
        Ok((fd, ebpf))
    }

    fn load_syscall(&self, entry: &ProgramEntry) -> Result<OwnedFd, Error> {
        let (insns, license) = syscall_insns(&self.bytes, entry).map_err(|reason| Error::Load {
            name: entry.name.clone(),
            reason,
        })?;
        sys::load_syscall_prog(&entry.name, &insns, &license).map_err(|reason| Error::Load {
            name: entry.name.clone(),
            reason,
        })
    }
}

fn load_err(entry: &ProgramEntry, e: &aya::programs::ProgramError) -> Error {
    Error::Load {
        name: entry.name.clone(),
        reason: tracekit_core::errors::chain(e),
    }
}

fn load_aya_program(
    program: &mut aya::programs::Program,
    entry: &ProgramEntry,
) -> Result<(), Error> {
    use aya::programs::Program as P;
    let result = match program {
        P::Xdp(p) => p.load(),
        P::SchedClassifier(p) => p.load(),
        P::SocketFilter(p) => p.load(),
        P::FlowDissector(p) => p.load(),
        P::RawTracePoint(p) => p.load(),
        P::CgroupSkb(p) => p.load(),
        P::SkLookup(p) => p.load(),
        // Loadable, but without a test run: loading lets the kernel answer with ENOTSUPP.
        P::TracePoint(p) => p.load(),
        P::KProbe(p) => p.load(),
        P::UProbe(p) => p.load(),
        P::PerfEvent(p) => p.load(),
        P::SockOps(p) => p.load(),
        P::SkMsg(p) => p.load(),
        P::SkSkb(p) => p.load(),
        _ => {
            return Err(Error::CannotLoad {
                name: entry.name.clone(),
                kind: entry.kind.name().to_owned(),
            });
        }
    };
    result.map_err(|e| load_err(entry, &e))
}

fn list_programs(bytes: &[u8]) -> Result<Vec<ProgramEntry>, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let mut programs = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_global() {
            continue;
        }
        let Some(index) = sym.section_index() else {
            continue;
        };
        let section = file.section_by_index(index).map_err(|e| e.to_string())?;
        let name = section.name().map_err(|e| e.to_string())?;
        let executable = matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0);
        if !executable || name == ".text" {
            continue;
        }
        let kind = ProgKind::from_section(name);
        programs.push(ProgramEntry {
            name: sym.name().map_err(|e| e.to_string())?.to_owned(),
            test_run: kind.test_run_supported(),
            kind,
            section: name.to_owned(),
            insns: sym.size() / 8,
        });
    }
    programs.sort_by_key(|p| p.section.clone());
    Ok(programs)
}

/// The instructions of a program alone in its section, for the raw syscall-program loader.
/// Relocations (maps, calls) would need a real loader, so they are refused.
fn syscall_insns(bytes: &[u8], entry: &ProgramEntry) -> Result<(Vec<u8>, CString), String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(entry.name.as_str()))
        .ok_or("symbol not found")?;
    let section = file
        .section_by_index(sym.section_index().ok_or("symbol has no section")?)
        .map_err(|e| e.to_string())?;
    if section.relocations().next().is_some() {
        return Err("syscall programs that use maps or call functions cannot be loaded by tracekit yet (aya 0.14 has no syscall program type)".to_owned());
    }
    let data = section.data().map_err(|e| e.to_string())?;
    let start = sym.address() as usize;
    let insns = data
        .get(start..start + sym.size() as usize)
        .ok_or("symbol outside its section")?
        .to_vec();
    let license = file
        .section_by_name("license")
        .and_then(|s| s.data().ok())
        .map(|d| d.split(|&b| b == 0).next().unwrap_or_default().to_vec())
        .unwrap_or_default();
    Ok((insns, CString::new(license).map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_elf_is_refused() {
        let err = BpfObject::from_bytes("junk", b"hello".to_vec()).unwrap_err();
        assert!(matches!(err, Error::NotElf { .. }), "{err}");
        assert!(err.to_string().contains("clang"), "{err}");
    }
}
