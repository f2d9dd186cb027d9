//! struct_ops programs: the kernel loads one as the implementation of one member of a kernel
//! struct (`tcp_congestion_ops.cong_avoid`, `bpf_dummy_ops.test_1`, ...), named at load by
//! the struct's BTF id and the member's index. The object says which: a variable in a
//! `.struct_ops` (or `.struct_ops.link`) section has the struct's type, and a relocation at a
//! member's offset points to the program. This is what libbpf's
//! `bpf_object__collect_st_ops_relos` reads.

use crate::btf::{self, Btf};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use std::collections::HashMap;

/// The member of a kernel struct that a struct_ops program implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Implements {
    /// The struct's name, e.g. `tcp_congestion_ops`.
    pub ops: String,
    pub member: String,
}

/// For each program in a struct_ops variable of the object, the member it implements.
pub(crate) fn implemented(bytes: &[u8]) -> Result<HashMap<String, Implements>, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let Some(btf_section) = file.section_by_name(".BTF") else {
        return Ok(HashMap::new());
    };
    let btf =
        Btf::parse(btf_section.data().map_err(|e| e.to_string())?).ok_or("cannot read .BTF")?;
    let mut found = HashMap::new();
    for section in file.sections() {
        let name = section.name().map_err(|e| e.to_string())?;
        if name != ".struct_ops" && name != ".struct_ops.link" {
            continue;
        }
        let variables: Vec<(u64, &str)> = file
            .symbols()
            .filter(|s| s.section_index() == Some(section.index()))
            .filter_map(|s| Some((s.address(), s.name().ok()?)))
            .collect();
        for (at, reloc) in section.relocations() {
            let RelocationTarget::Symbol(index) = reloc.target() else {
                continue;
            };
            let program = file
                .symbol_by_index(index)
                .and_then(|s| s.name().map(str::to_owned))
                .map_err(|e| e.to_string())?;
            let Some((start, variable)) = variables
                .iter()
                .filter(|(start, _)| *start <= at)
                .max_by_key(|(start, _)| *start)
            else {
                continue;
            };
            if let Some(implements) = member_at(&btf, name, variable, at - start) {
                found.insert(program, implements);
            }
        }
    }
    Ok(found)
}

/// The struct of variable `variable` in DATASEC `section`, and its member at `offset`.
fn member_at(btf: &Btf<'_>, section: &str, variable: &str, offset: u64) -> Option<Implements> {
    let var = btf
        .datasec_entries(btf.datasec(section)?)
        .into_iter()
        .map(|(id, _)| id)
        .find(|&id| {
            btf.get(id)
                .is_some_and(|(k, n, _)| k == btf::VAR && n == variable)
        })?;
    let ty = btf.resolve(btf.referenced(var)?);
    let (_, ops, _) = btf.get(ty)?;
    let member = btf
        .members(ty)
        .into_iter()
        .find(|m| u64::from(m.bit_offset / 8) == offset)?;
    Some(Implements {
        ops: ops.to_owned(),
        member: member.name.to_owned(),
    })
}

/// The kernel's BTF id of the struct and the index of the member: what `BPF_PROG_LOAD` takes
/// as `attach_btf_id` and `expected_attach_type` for a struct_ops program.
pub(crate) fn kernel_ids(implements: &Implements) -> Result<(u32, u32), String> {
    let kernel = btf::kernel()?;
    let id = kernel
        .named(&implements.ops)
        .into_iter()
        .find(|&id| kernel.btf.get(id).is_some_and(|(k, _, _)| k == btf::STRUCT))
        .ok_or_else(|| {
            format!(
                "the kernel has no struct_ops type '{}' (is the module that defines it loaded?)",
                implements.ops
            )
        })?;
    let index = kernel
        .btf
        .members(id)
        .iter()
        .position(|m| m.name == implements.member)
        .ok_or_else(|| {
            format!(
                "the kernel's struct {} has no member '{}'",
                implements.ops, implements.member
            )
        })?;
    Ok((id, index as u32))
}
