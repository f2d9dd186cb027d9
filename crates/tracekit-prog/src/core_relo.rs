//! Naming a CO-RE relocation that could not be applied. aya-obj turns such an instruction into
//! a call of the non-existent helper 0xbad2310 (as libbpf does), so the verifier can only say
//! `invalid func unknown#195896080`; libbpf's loader says which type and field. This reads the
//! object's `.BTF` and `.BTF.ext` to say the same.

use object::{Object, ObjectSection};

/// The name of a CO-RE relocation kind (`enum bpf_core_relo_kind`).
fn kind_name(kind: u32) -> &'static str {
    const NAMES: [&str; 13] = [
        "field_byte_offset",
        "field_byte_size",
        "field_exists",
        "field_signed",
        "field_lshift_u64",
        "field_rshift_u64",
        "type_id_local",
        "type_id_target",
        "type_exists",
        "type_size",
        "enumval_exists",
        "enumval_value",
        "type_matches",
    ];
    NAMES.get(kind as usize).copied().unwrap_or("unknown kind")
}

/// The CO-RE relocation of the instruction at byte `offset` of section `section`: what it
/// reaches (`struct bitfields.b`) and its kind (`field_lshift_u64`); `None` when the object
/// has none there.
pub(crate) fn describe(elf: &[u8], section: &str, offset: usize) -> Option<(String, &'static str)> {
    let file = object::File::parse(elf).ok()?;
    let btf = Btf::parse(file.section_by_name(".BTF")?.data().ok()?)?;
    let ext = file.section_by_name(".BTF.ext")?.data().ok()?;
    let (_, type_id, access, kind) = core_relo_at(ext, &btf, section, offset)?;
    Some((btf.access_path(type_id, &access), kind_name(kind)))
}

/// (insn_off, type_id, access string, kind) of the relocation at `offset` in `section`.
fn core_relo_at(
    ext: &[u8],
    btf: &Btf<'_>,
    section: &str,
    offset: usize,
) -> Option<(u32, u32, String, u32)> {
    let hdr_len = u32_at(ext, 4)? as usize;
    if hdr_len < 32 {
        return None;
    }
    let start = hdr_len + u32_at(ext, 24)? as usize;
    let end = start + u32_at(ext, 28)? as usize;
    let rec_size = u32_at(ext, start)? as usize;
    let mut at = start + 4;
    while at + 8 <= end {
        let name = btf.string(u32_at(ext, at)?)?;
        let count = u32_at(ext, at + 4)? as usize;
        for i in 0..count {
            let rec = at + 8 + i * rec_size;
            let insn_off = u32_at(ext, rec)?;
            if name == section && insn_off as usize == offset {
                let access = btf.string(u32_at(ext, rec + 8)?)?.to_owned();
                return Some((
                    insn_off,
                    u32_at(ext, rec + 4)?,
                    access,
                    u32_at(ext, rec + 12)?,
                ));
            }
        }
        at += 8 + count.checked_mul(rec_size)?;
    }
    None
}

/// Just enough of a BTF blob to name types and members.
struct Btf<'a> {
    /// Start of each type's record in `types` (index = type id - 1).
    offsets: Vec<usize>,
    types: &'a [u8],
    strings: &'a [u8],
}

const INT: u32 = 1;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Option<Btf<'a>> {
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types = data.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
        let strings = data.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
        let mut offsets = Vec::new();
        let mut at = 0;
        while at + 12 <= types.len() {
            offsets.push(at);
            let info = u32_at(types, at + 4)?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                INT | 14 | 17 => 4,
                ARRAY => 12,
                STRUCT | UNION | 15 | ENUM64 => 12 * vlen,
                ENUM | 13 => 8 * vlen,
                _ => 0,
            };
            at += 12 + extra;
        }
        Some(Btf {
            offsets,
            types,
            strings,
        })
    }

    fn string(&self, off: u32) -> Option<&'a str> {
        let rest = self.strings.get(off as usize..)?;
        std::str::from_utf8(&rest[..rest.iter().position(|&b| b == 0)?]).ok()
    }

    /// (kind, name, record offset) of a type id.
    fn get(&self, id: u32) -> Option<(u32, &'a str, usize)> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)?;
        let kind = (u32_at(self.types, at + 4)? >> 24) & 0x1f;
        Some((kind, self.string(u32_at(self.types, at)?)?, at))
    }

    /// The type behind typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.get(id) {
                Some((TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG, _, at)) => {
                    id = u32_at(self.types, at + 8).unwrap_or(0);
                }
                _ => break,
            }
        }
        id
    }

    /// `struct foo.bar.baz` for type `id` and an access string such as `0:1:2`.
    fn access_path(&self, id: u32, access: &str) -> String {
        let Some((kind, name, _)) = self.get(id) else {
            return format!("type #{id}");
        };
        let prefix = match kind {
            STRUCT => "struct ",
            UNION => "union ",
            ENUM | ENUM64 => "enum ",
            _ => "",
        };
        let mut path = format!("{prefix}{name}");
        let mut current = id;
        for index in access
            .split(':')
            .skip(1)
            .filter_map(|i| i.parse::<usize>().ok())
        {
            let resolved = self.resolve(current);
            match self.get(resolved) {
                Some((STRUCT | UNION, _, at)) => {
                    let member = at + 12 + 12 * index;
                    let field = u32_at(self.types, member).and_then(|n| self.string(n));
                    path.push('.');
                    path.push_str(field.filter(|f| !f.is_empty()).unwrap_or("<anonymous>"));
                    current = u32_at(self.types, member + 4).unwrap_or(0);
                }
                Some((ARRAY, _, at)) => {
                    path.push_str(&format!("[{index}]"));
                    current = u32_at(self.types, at + 12).unwrap_or(0);
                }
                _ => break,
            }
        }
        path
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
