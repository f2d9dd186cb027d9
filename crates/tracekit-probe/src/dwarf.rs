//! Function parameters from DWARF debug information: what `--print` needs to show
//! `parse(len=5, buf=0x7ffd1230)` instead of raw registers.
//!
//! Read with gimli from the binary itself or from its separate debug file (Debian's `-dbg`
//! and `-dbgsym` packages: `/usr/lib/debug/.build-id/xx/yyyy.debug`, or the
//! `.gnu_debuglink` name under `/usr/lib/debug`). Only the parameters a function's entry
//! receives in integer registers are named; the rest of the arguments stay unnamed, so a
//! name is never put on the wrong register.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitOffset};
use object::{Object, ObjectSection};

/// How a parameter's value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A signed integer of this many bytes.
    Signed(u8),
    /// An unsigned integer of this many bytes.
    Unsigned(u8),
    /// `bool`.
    Bool,
    /// A character (`char`), shown with its code.
    Char,
    /// A pointer or reference (hex).
    Pointer,
    /// Anything else that fits a register (enums: their underlying integer).
    Other,
}

/// One named parameter and the integer argument register (0 = rdi ... 5 = r9) it arrives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its name in the source (`this` for a C++ method's object).
    pub name: String,
    /// How to show its value.
    pub kind: ValueKind,
    /// Its argument register, by System V order.
    pub reg: usize,
}

impl Param {
    /// `name=value`, with the value cut to the parameter's size and sign.
    pub fn show(&self, raw: u64) -> String {
        format!("{}={}", self.name, self.kind.show(raw))
    }
}

impl ValueKind {
    /// A register's value cut to this type's size and sign.
    pub fn show(self, raw: u64) -> String {
        match self {
            ValueKind::Signed(n) => sign_extend(raw, n).to_string(),
            ValueKind::Unsigned(n) => truncate(raw, n).to_string(),
            ValueKind::Bool => (raw & 0xff != 0).to_string(),
            ValueKind::Char => show_char(raw as u8),
            ValueKind::Pointer => format!("{raw:#x}"),
            ValueKind::Other => crate::render::fmt_int(raw),
        }
    }
}

/// What DWARF says of a function's entry: the parameters it can place in registers, whether
/// those are all of them, and how to show its return value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The named parameters, in register order.
    pub params: Vec<Param>,
    /// Whether every formal parameter was placed (otherwise the list stops at the first
    /// whose passing this cannot tell).
    pub complete: bool,
    /// How to show the return value in rax, when it is one integer register.
    pub ret: Option<ValueKind>,
}

fn truncate(raw: u64, bytes: u8) -> u64 {
    match bytes {
        1..=7 => raw & ((1u64 << (u32::from(bytes) * 8)) - 1),
        _ => raw,
    }
}

fn sign_extend(raw: u64, bytes: u8) -> i64 {
    match bytes {
        1..=7 => {
            let shift = 64 - u32::from(bytes) * 8;
            ((raw << shift) as i64) >> shift
        }
        _ => raw as i64,
    }
}

fn show_char(c: u8) -> String {
    if c.is_ascii_graphic() || c == b' ' {
        format!("'{}'", c as char)
    } else {
        c.to_string()
    }
}

/// The named integer-register parameters of the functions starting at `addresses` (ELF
/// virtual addresses) in `binary`. A function without debug information is absent; an
/// unreadable file gives an empty map (the hits are printed unnamed, as without DWARF).
pub fn parameters(binary: &Path, addresses: &HashSet<u64>) -> HashMap<u64, Function> {
    let Ok(data) = std::fs::read(binary) else {
        return HashMap::new();
    };
    let Ok(file) = object::File::parse(&*data) else {
        return HashMap::new();
    };
    if file.section_by_name(".debug_info").is_some() {
        return read(&file, addresses);
    }
    let Some(debug) = separate_debug_file(&file, binary) else {
        return HashMap::new();
    };
    let Ok(data) = std::fs::read(debug) else {
        return HashMap::new();
    };
    match object::File::parse(&*data) {
        Ok(file) => read(&file, addresses),
        Err(_) => HashMap::new(),
    }
}

/// Where a distribution keeps the stripped binary's debug information.
fn separate_debug_file(file: &object::File<'_>, binary: &Path) -> Option<PathBuf> {
    if let Ok(Some(id)) = file.build_id()
        && let Some((first, rest)) = id.split_first()
    {
        let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
        let path = PathBuf::from(format!("/usr/lib/debug/.build-id/{first:02x}/{hex}.debug"));
        if path.exists() {
            return Some(path);
        }
    }
    let (name, _crc) = file.gnu_debuglink().ok()??;
    let name = std::str::from_utf8(name).ok()?;
    let dir = binary.parent()?;
    [
        dir.join(name),
        dir.join(".debug").join(name),
        Path::new("/usr/lib/debug")
            .join(dir.strip_prefix("/").ok()?)
            .join(name),
    ]
    .into_iter()
    .find(|p| p.exists())
}

type Reader<'a> = EndianSlice<'a, RunTimeEndian>;

fn read(file: &object::File<'_>, addresses: &HashSet<u64>) -> HashMap<u64, Function> {
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let Ok(sections) = gimli::DwarfSections::load(load) else {
        return HashMap::new();
    };
    let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
    let mut found = HashMap::new();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        // A damaged unit ends its own walk, never the others'.
        let _ = scan_unit(&dwarf, &unit, addresses, &mut found);
        if found.len() == addresses.len() {
            break;
        }
    }
    found
}

/// Finds the subprograms of `unit` that start at one of `addresses`. Units in Rust are
/// skipped: Rust's own ABI passes arguments as it likes (a big struct by pointer, `u128` in
/// two registers), so names would land on the wrong registers.
fn scan_unit(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    addresses: &HashSet<u64>,
    found: &mut HashMap<u64, Function>,
) -> gimli::Result<()> {
    let mut entries = unit.entries();
    let cpp = match entries.next_dfs()? {
        Some((_, root)) => match root.attr_value(gimli::DW_AT_language)? {
            Some(AttributeValue::Language(gimli::DW_LANG_Rust)) => return Ok(()),
            Some(AttributeValue::Language(lang)) => lang
                .static_string()
                .is_some_and(|l| l.contains("C_plus_plus")),
            _ => false,
        },
        None => return Ok(()),
    };
    while let Some((_, entry)) = entries.next_dfs()? {
        if entry.tag() != gimli::DW_TAG_subprogram {
            continue;
        }
        let Some(value) = entry.attr_value(gimli::DW_AT_low_pc)? else {
            continue;
        };
        let Some(low) = dwarf.attr_address(unit, value)? else {
            continue;
        };
        if addresses.contains(&low)
            && !found.contains_key(&low)
            && let Some(f) = function_of(dwarf, unit, entry.offset(), cpp)?
        {
            found.insert(low, f);
        }
    }
    Ok(())
}

/// The formal parameters of one subprogram that arrive in integer registers, in register
/// order, up to the first whose passing this cannot tell, and its return value's type.
fn function_of(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    subprogram: UnitOffset,
    cpp: bool,
) -> gimli::Result<Option<Function>> {
    let returns = kind_of(unit, type_of(unit, subprogram, 0)?, 0, cpp)?;
    let mut f = Function {
        params: Vec::new(),
        complete: true,
        ret: match returns {
            Passing::Register(kind) => Some(kind),
            _ => None,
        },
    };
    // An aggregate returned in memory: its address is a hidden first argument (rdi).
    let mut reg = usize::from(matches!(returns, Passing::Memory | Passing::ByReference));
    let mut tree = unit.entries_tree(Some(subprogram))?;
    let mut children = tree.root()?.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_formal_parameter {
            continue;
        }
        let name = name_of(dwarf, unit, entry.offset(), 0)?.unwrap_or_else(|| "?".into());
        let kind = match kind_of(unit, type_of(unit, entry.offset(), 0)?, 0, cpp)? {
            Passing::Register(kind) => kind,
            Passing::ByReference => ValueKind::Pointer,
            Passing::Sse | Passing::Memory => continue,
            Passing::Unknown => {
                f.complete = false;
                break;
            }
        };
        if reg >= 6 {
            f.complete = false;
            break;
        }
        f.params.push(Param { name, kind, reg });
        reg += 1;
    }
    Ok(Some(f))
}

/// A DIE's name, following `DW_AT_abstract_origin` and `DW_AT_specification` (C++
/// definitions and inlined copies keep the name on the declaration).
fn name_of(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    at: UnitOffset,
    depth: u8,
) -> gimli::Result<Option<String>> {
    let entry = unit.entry(at)?;
    if let Some(value) = entry.attr_value(gimli::DW_AT_name)? {
        let name = dwarf.attr_string(unit, value)?;
        return Ok(Some(name.to_string_lossy().into_owned()));
    }
    match origin(&entry)? {
        Some(next) if depth < 4 => name_of(dwarf, unit, next, depth + 1),
        _ => Ok(None),
    }
}

fn origin(
    entry: &gimli::DebuggingInformationEntry<Reader<'_>>,
) -> gimli::Result<Option<UnitOffset>> {
    for attr in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        if let Some(AttributeValue::UnitRef(o)) = entry.attr_value(attr)? {
            return Ok(Some(o));
        }
    }
    Ok(None)
}

/// The DIE of a parameter's type, from the parameter or its origin.
fn type_of(
    unit: &gimli::Unit<Reader<'_>>,
    at: UnitOffset,
    depth: u8,
) -> gimli::Result<Option<UnitOffset>> {
    let entry = unit.entry(at)?;
    if let Some(AttributeValue::UnitRef(t)) = entry.attr_value(gimli::DW_AT_type)? {
        return Ok(Some(t));
    }
    match origin(&entry)? {
        Some(next) if depth < 4 => type_of(unit, next, depth + 1),
        _ => Ok(None),
    }
}

/// How the System V x86-64 calling convention passes a parameter (or a return value), as far
/// as naming the integer registers needs.
enum Passing {
    /// In the next integer register, shown this way.
    Register(ValueKind),
    /// A C++ object with a non-trivial copy or destructor: its address in the next register.
    ByReference,
    /// In an SSE register (floats): the next parameter takes the integer register.
    Sse,
    /// In memory (an aggregate over 16 bytes: on the stack as a parameter; as a return value
    /// the caller passes its address in rdi).
    Memory,
    /// Small aggregates (split between register classes), 16-byte integers, or types this
    /// does not read: the registers from here on are left unnamed.
    Unknown,
}

/// How a value of type `ty` is passed (`cpp`: the unit is C++, where a class may be passed by
/// invisible reference).
fn kind_of(
    unit: &gimli::Unit<Reader<'_>>,
    ty: Option<UnitOffset>,
    depth: u8,
    cpp: bool,
) -> gimli::Result<Passing> {
    let Some(ty) = ty else {
        return Ok(Passing::Unknown);
    };
    let entry = unit.entry(ty)?;
    let size = match entry.attr_value(gimli::DW_AT_byte_size)? {
        Some(v) => v.udata_value().unwrap_or(8),
        None => 8,
    };
    let bytes = u8::try_from(size.min(8)).unwrap_or(8);
    Ok(match entry.tag() {
        gimli::DW_TAG_pointer_type
        | gimli::DW_TAG_reference_type
        | gimli::DW_TAG_rvalue_reference_type => Passing::Register(ValueKind::Pointer),
        gimli::DW_TAG_enumeration_type if size <= 8 => Passing::Register(ValueKind::Other),
        gimli::DW_TAG_base_type if size <= 8 => base_kind(&entry, bytes)?,
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_class_type => {
            aggregate(&entry, size, cpp)?
        }
        gimli::DW_TAG_typedef
        | gimli::DW_TAG_const_type
        | gimli::DW_TAG_volatile_type
        | gimli::DW_TAG_restrict_type
            if depth < 16 =>
        {
            match entry.attr_value(gimli::DW_AT_type)? {
                Some(AttributeValue::UnitRef(t)) => kind_of(unit, Some(t), depth + 1, cpp)?,
                // `const void` and friends.
                _ => Passing::Register(ValueKind::Other),
            }
        }
        _ => Passing::Unknown,
    })
}

/// A struct, union or class by value: over 16 bytes it goes on the stack, unless C++ passes
/// it by invisible reference (`DW_AT_calling_convention`); a small one may be split between
/// register classes, which this does not work out.
fn aggregate(
    entry: &gimli::DebuggingInformationEntry<Reader<'_>>,
    size: u64,
    cpp: bool,
) -> gimli::Result<Passing> {
    let convention = match entry.attr_value(gimli::DW_AT_calling_convention)? {
        Some(AttributeValue::CallingConvention(cc)) => Some(cc),
        _ => None,
    };
    Ok(match convention {
        Some(gimli::DW_CC_pass_by_reference) => Passing::ByReference,
        // A C++ class that does not say how it is passed may be either.
        None if cpp => Passing::Unknown,
        _ if size > 16 => Passing::Memory,
        _ => Passing::Unknown,
    })
}

fn base_kind(
    entry: &gimli::DebuggingInformationEntry<Reader<'_>>,
    bytes: u8,
) -> gimli::Result<Passing> {
    let Some(AttributeValue::Encoding(encoding)) = entry.attr_value(gimli::DW_AT_encoding)? else {
        return Ok(Passing::Register(ValueKind::Other));
    };
    Ok(match encoding {
        gimli::DW_ATE_signed => Passing::Register(ValueKind::Signed(bytes)),
        gimli::DW_ATE_unsigned => Passing::Register(ValueKind::Unsigned(bytes)),
        gimli::DW_ATE_boolean => Passing::Register(ValueKind::Bool),
        gimli::DW_ATE_signed_char | gimli::DW_ATE_unsigned_char => {
            Passing::Register(ValueKind::Char)
        }
        gimli::DW_ATE_UTF if bytes == 1 => Passing::Register(ValueKind::Char),
        gimli::DW_ATE_float | gimli::DW_ATE_complex_float => Passing::Sse,
        _ if bytes <= 8 => Passing::Register(ValueKind::Other),
        _ => Passing::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_the_parameter_size_and_sign() {
        let p = |kind| Param {
            name: "x".into(),
            kind,
            reg: 0,
        };
        assert_eq!(p(ValueKind::Signed(4)).show(0xdead_0000_ffff_fffe), "x=-2");
        assert_eq!(
            p(ValueKind::Unsigned(4)).show(0xdead_0000_ffff_fffe),
            "x=4294967294"
        );
        assert_eq!(p(ValueKind::Signed(8)).show(u64::MAX), "x=-1");
        assert_eq!(p(ValueKind::Unsigned(1)).show(0x1ff), "x=255");
        assert_eq!(p(ValueKind::Bool).show(0x100), "x=false");
        assert_eq!(p(ValueKind::Char).show(0x41), "x='A'");
        assert_eq!(p(ValueKind::Pointer).show(16), "x=0x10");
    }
}
