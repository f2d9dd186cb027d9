//! A BPF object file: its programs, and loading one of them into the kernel.

use crate::kind::ProgKind;
use crate::run::Program;
use crate::section::SectionType;
use crate::{Error, loader, rename};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use tracekit_core::report::{Column, Style, Table};

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
    /// Whether `prog run` can run it: the kernel has a test run for its type and (after
    /// [`BpfObject::check_loads`]) it loads.
    pub test_run: bool,
    /// Why it cannot be test-run, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// A BPF ELF object (as built by `clang -target bpf`), kept in memory so that programs can
/// be loaded from it any number of times.
#[derive(Debug, Clone)]
pub struct BpfObject {
    what: String,
    /// The object with the sections aya-obj cannot parse renamed (see `rename`).
    bytes: Vec<u8>,
    /// `bytes` as the loader loads them (`loader::prepare`), made at the first load.
    loadable: OnceLock<Result<loader::Prepared, String>>,
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
        let parse_err = |reason| Error::Parse {
            what: what.clone(),
            reason,
        };
        let programs = list_programs(&bytes).map_err(parse_err)?;
        let renames: HashMap<String, String> = programs
            .iter()
            .filter(|p| aya_obj::ProgramSection::from_str(&p.section).is_err())
            .map(|p| p.section.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(n, section)| (section, rename::stand_in_name(n)))
            .collect();
        let bytes = if renames.is_empty() {
            bytes
        } else {
            rename::rename_sections(&bytes, &renames).map_err(parse_err)?
        };
        Ok(BpfObject {
            what,
            bytes,
            loadable: OnceLock::new(),
            programs,
        })
    }

    /// The programs in the object, in file order.
    pub fn programs(&self) -> &[ProgramEntry] {
        &self.programs
    }

    /// Loads every program that has a test run and unloads it again, so that each entry's
    /// `test_run` says whether `prog run` can run it; a program the loader or the verifier
    /// refuses gets the first line of the reason in `why_not`.
    pub fn check_loads(&mut self) {
        let refusals: Vec<(usize, String)> = self
            .programs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.test_run)
            .filter_map(|(i, p)| self.load(&p.name).err().map(|e| (i, e.summary())))
            .collect();
        for (i, why) in refusals {
            self.programs[i].test_run = false;
            self.programs[i].why_not = Some(why);
        }
    }

    /// The object's program list as `tracekit prog list` prints it: one aligned row per
    /// program, and below the table why each "no" is a no.
    pub fn render_list(&self, style: Style) -> String {
        let mut t = Table::new(vec![
            Column::left("program"),
            Column::left("type"),
            Column::left("section"),
            Column::right("insns"),
            Column::left("test-run"),
        ]);
        let mut reasons = String::new();
        for p in &self.programs {
            let support = if p.test_run { "yes" } else { "no" };
            let kind = match &p.kind {
                kind if kind.is_unknown_section() => "?".to_owned(),
                kind => kind.to_string(),
            };
            t.row(vec![
                p.name.clone(),
                kind,
                p.section.clone(),
                p.insns.to_string(),
                support.to_owned(),
            ]);
            if let Some(why) = &p.why_not {
                reasons.push_str(&format!("   {}: {why}\n", p.name));
            }
        }
        let plural = if t.len() == 1 { "" } else { "s" };
        let mut out = format!(
            "\n {}: {} program{plural}\n\n{}\n",
            self.what,
            t.len(),
            t.render(style)
        );
        if !reasons.is_empty() {
            out.push_str(&format!(
                " {}\n{reasons}\n",
                style.bold("not test-runnable:")
            ));
        }
        out
    }

    /// Reads the object as loading any of its programs would, without the kernel (no BPF
    /// syscall, so no privilege needed): the fix-ups tracekit makes, aya-obj's parse, CO-RE
    /// and call relocation. A damaged object is an [`Error::Parse`] naming the damaged part.
    pub fn check_parse(&self) -> Result<(), Error> {
        let prepared = self
            .loadable
            .get_or_init(|| loader::prepare(&self.bytes))
            .as_ref()
            .map_err(|reason| Error::Parse {
                what: self.what.clone(),
                reason: reason.clone(),
            })?;
        loader::check(&self.what, prepared)
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
        let ty = SectionType::parse(&entry.section).ok_or_else(|| Error::UnknownSection {
            name: entry.name.clone(),
            section: entry.section.clone(),
        })?;
        let loadable = self
            .loadable
            .get_or_init(|| loader::prepare(&self.bytes))
            .as_ref()
            .map_err(|reason| Error::Load {
                name: entry.name.clone(),
                reason: reason.clone(),
            })?;
        let loaded = loader::load(&self.what, loadable, entry, &ty, &self.programs)?;
        Ok(Program::new(
            entry.name.clone(),
            entry.kind.clone(),
            loaded.fd,
            loaded.maps,
        ))
    }
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
        let why_not = match &kind {
            ProgKind::Other(what) if kind.is_unknown_section() => Some(format!(
                "{what}: libbpf does not know it, so the program type is unknown"
            )),
            ProgKind::Other(kind) => {
                Some(format!("the kernel has no test run for {kind} programs"))
            }
            _ => None,
        };
        programs.push(ProgramEntry {
            name: sym.name().map_err(|e| e.to_string())?.to_owned(),
            test_run: why_not.is_none(),
            why_not,
            kind,
            section: name.to_owned(),
            insns: sym.size() / 8,
        });
    }
    programs.sort_by_key(|p| p.section.clone());
    Ok(programs)
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
