//! Programs already loaded in the kernel (by id, pinned path or name), test-run without their
//! object file, as `bpftool prog run id N` does.

use crate::kind::ProgKind;
use crate::run::Program;
use crate::{Error, loader};
use aya::programs::{ProgramInfo, loaded_programs};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a loaded program is: `id:N`, `pinned:PATH` or `name:NAME` (as bpftool names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelProgram {
    /// By program id (`bpftool prog show` lists them).
    Id(u32),
    /// By its path in bpffs.
    Pinned(PathBuf),
    /// By name (the kernel keeps 15 characters); it must be unique.
    Name(String),
}

impl FromStr for KernelProgram {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(id) = s.strip_prefix("id:") {
            return id
                .parse()
                .map(KernelProgram::Id)
                .map_err(|_| format!("'{id}' is not a program id (a whole number)"));
        }
        if let Some(path) = s.strip_prefix("pinned:") {
            if path.is_empty() || path.contains('\0') {
                return Err("pinned: needs a path in bpffs, e.g. pinned:/sys/fs/bpf/prog".into());
            }
            return Ok(KernelProgram::Pinned(path.into()));
        }
        if let Some(name) = s.strip_prefix("name:") {
            if name.is_empty() {
                return Err("name: needs a program name".into());
            }
            return Ok(KernelProgram::Name(name.to_owned()));
        }
        Err(format!("'{s}' is not id:N, pinned:PATH or name:NAME"))
    }
}

impl KernelProgram {
    /// The program a command-line argument names when it is `id:N`, `pinned:PATH` or
    /// `name:NAME` and no file of that name exists; `Ok(None)` for an object file.
    pub fn from_arg(arg: &std::path::Path) -> Result<Option<Self>, String> {
        let text = arg.to_string_lossy();
        let prefixed = ["id:", "pinned:", "name:"]
            .iter()
            .any(|p| text.starts_with(p));
        if !prefixed || arg.exists() {
            return Ok(None);
        }
        text.parse().map(Some)
    }
}

impl std::fmt::Display for KernelProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelProgram::Id(id) => write!(f, "id:{id}"),
            KernelProgram::Pinned(path) => write!(f, "pinned:{}", path.display()),
            KernelProgram::Name(name) => write!(f, "name:{name}"),
        }
    }
}

impl KernelProgram {
    /// Opens the program, with the maps it uses (by their kernel names).
    pub fn open(&self) -> Result<Program, Error> {
        let info = self.info()?;
        let fd = info
            .fd()
            .map_err(|e| self.error(tracekit_core::errors::chain(&e)))?;
        let fd = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| self.error(e.to_string()))?;
        let mut maps = std::collections::HashMap::new();
        let ids = info
            .map_ids()
            .map_err(|e| self.error(tracekit_core::errors::chain(&e)))?
            .unwrap_or_default();
        for id in ids {
            let data = aya::maps::MapData::from_id(id).map_err(|e| {
                self.error(format!("map id {id}: {}", tracekit_core::errors::chain(&e)))
            })?;
            let name = data
                .info()
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("map{id}"));
            let map = loader::opened_map(data).map_err(|e| self.error(e))?;
            maps.insert(name, map);
        }
        let name = info.name_as_str().unwrap_or_default().to_owned();
        let kind = ProgKind::from_prog_type(info.program_type());
        Ok(Program::new(name, kind, fd, maps))
    }

    fn info(&self) -> Result<ProgramInfo, Error> {
        match self {
            KernelProgram::Pinned(path) => ProgramInfo::from_pin(path)
                .map_err(|e| self.error(tracekit_core::errors::chain(&e))),
            KernelProgram::Id(id) => self.find(|p| p.id() == *id),
            KernelProgram::Name(name) => self.find(|p| p.name_as_str() == Some(name.as_str())),
        }
    }

    /// The one loaded program `wanted` picks.
    fn find(&self, wanted: impl Fn(&ProgramInfo) -> bool) -> Result<ProgramInfo, Error> {
        let mut found: Vec<ProgramInfo> = Vec::new();
        for p in loaded_programs() {
            let p = p.map_err(|e| self.error(tracekit_core::errors::chain(&e)))?;
            if wanted(&p) {
                found.push(p);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(self.error("no such program is loaded (see `bpftool prog show`)".into())),
            _ => {
                let ids: Vec<String> = found.iter().map(|p| format!("id:{}", p.id())).collect();
                Err(self.error(format!(
                    "{} programs have that name; pick one: {}",
                    found.len(),
                    ids.join(", ")
                )))
            }
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::Kernel {
            which: self.to_string(),
            reason,
        }
    }
}
