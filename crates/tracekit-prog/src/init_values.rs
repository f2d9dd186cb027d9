//! Initial values of `.maps` (libbpf's `__array(values, ...)` with an initializer): the slots
//! of a prog array that name programs of the object, and the slots of a map of maps that name
//! other maps. The compiler leaves each as a relocation in `.rel.maps`; libbpf fills the slots
//! after creating the maps and loading the programs, and so does the loader.
//!
//! aya-obj 0.3 parses map-of-maps values but refuses a prog array's (`values` of function
//! pointers): [`hide_prog_array_values`] renames that member away in BTF before aya-obj
//! sees it (upstream, aya-obj's `parse_btf_map_struct` should accept a FUNC_PROTO pointee).

use crate::btf::{self, Btf, BtfBlob};
use crate::rename::{Elf, move_section};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SymbolKind};

/// One initialised slot of a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The prog array or map of maps.
    pub map: String,
    pub index: u32,
    pub holds: SlotValue,
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotValue {
    Program(String),
    Map(String),
}

/// Every `.maps` variable: its name and its `values` member.
fn map_variables<'a>(btf: &Btf<'a>) -> Vec<(&'a str, Option<btf::Member<'a>>)> {
    let Some(maps) = btf.datasec(".maps") else {
        return Vec::new();
    };
    btf.datasec_entries(maps)
        .into_iter()
        .filter_map(|(var, _)| {
            let (btf::VAR, name, _) = btf.get(var)? else {
                return None;
            };
            let values = btf
                .members(btf.referenced(var).unwrap_or(0))
                .into_iter()
                .find(|m| m.name == "values");
            Some((name, values))
        })
        .collect()
}

/// The initialised slots of the object's maps, from the relocations of `.maps`.
pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Slot>, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let Some(section) = file.section_by_name(".maps") else {
        return Ok(Vec::new());
    };
    let Some(btf_data) = file.section_by_name(".BTF") else {
        return Ok(Vec::new());
    };
    let btf_bytes = btf_data.data().map_err(|e| e.to_string())?;
    let btf = Btf::parse(btf_bytes).ok_or("cannot read .BTF")?;
    // The compiler leaves DATASEC offsets 0 in the object (libbpf fills them from the
    // symbols): each variable's offset is its symbol's value.
    let offsets: std::collections::HashMap<&str, u64> = file
        .symbols()
        .filter(|s| s.section_index() == Some(section.index()))
        .filter_map(|s| Some((s.name().ok()?, s.address())))
        .collect();
    let variables: Vec<(&str, u64, Option<btf::Member<'_>>)> = map_variables(&btf)
        .into_iter()
        .filter_map(|(name, values)| Some((name, *offsets.get(name)?, values)))
        .collect();
    let mut slots = Vec::new();
    for (at, reloc) in section.relocations() {
        let RelocationTarget::Symbol(index) = reloc.target() else {
            continue;
        };
        let symbol = file.symbol_by_index(index).map_err(|e| e.to_string())?;
        let target = symbol.name().map_err(|e| e.to_string())?.to_owned();
        // The variable the relocation is in: the last one starting at or before it.
        let slot = variables
            .iter()
            .filter(|(_, offset, _)| *offset <= at)
            .max_by_key(|(_, offset, _)| *offset)
            .and_then(|(map, offset, values)| {
                let start = offset + u64::from(values.as_ref()?.bit_offset / 8);
                let index = at.checked_sub(start)? / 8;
                Some(Slot {
                    map: (*map).to_owned(),
                    index: u32::try_from(index).ok()?,
                    holds: if symbol.kind() == SymbolKind::Text {
                        SlotValue::Program(target.clone())
                    } else {
                        SlotValue::Map(target.clone())
                    },
                })
            });
        slots.push(slot.ok_or_else(|| {
            format!("a relocation in .maps at offset {at} (to '{target}') is in no map's values")
        })?);
    }
    Ok(slots)
}

/// The object with the `values` member of its prog arrays unnamed in BTF, so that aya-obj
/// parses them (it would read them as the inner map of a map of maps and fail); `None` when
/// there are none.
pub(crate) fn hide_prog_array_values(bytes: &[u8]) -> Option<Vec<u8>> {
    let elf = Elf::parse(bytes).ok()?;
    let btf_index = elf.section(".BTF")?;
    let local = Btf::parse(elf.contents(btf_index).ok()?)?;
    let of_functions: Vec<usize> = map_variables(&local)
        .into_iter()
        .filter_map(|(_, values)| values)
        .filter(|values| points_to_function(&local, values.ty))
        .map(|values| values.record)
        .collect();
    if of_functions.is_empty() {
        return None;
    }
    let mut blob = BtfBlob::new(elf.contents(btf_index).ok()?)?;
    let hidden = blob.add_string("tracekit_prog_array_values");
    for record in of_functions {
        blob.patch(record, hidden);
    }
    let mut out = bytes.to_vec();
    move_section(&mut out, &elf, btf_index, &blob.to_bytes());
    Some(out)
}

/// Whether `array` is an array of pointers to functions (a prog array's values).
fn points_to_function(btf: &Btf<'_>, array: u32) -> bool {
    let pointee = btf
        .array_element(array)
        .map(|e| btf.resolve(e))
        .filter(|&e| btf.get(e).is_some_and(|(kind, _, _)| kind == btf::PTR))
        .and_then(|p| btf.referenced(p));
    pointee.is_some_and(|f| {
        btf.get(btf.resolve(f))
            .is_some_and(|(kind, _, _)| kind == btf::FUNC_PROTO)
    })
}
