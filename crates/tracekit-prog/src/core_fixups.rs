//! CO-RE relocations that libbpf applies and aya-obj 0.3 cannot, applied to the object before
//! aya-obj reads it; each is then dropped from `.BTF.ext`, so aya-obj relocates the rest.
//!
//! - `type_matches` (kind 12, `bpf_core_type_matches()`): aya-obj refuses the whole object
//!   ("invalid BTF relocation kind `12`"). Computed here with libbpf's rules
//!   (`__bpf_core_types_match` in relo_core.c).
//! - `type_id_target` and `type_size` of a type the kernel does not have: libbpf gives 0
//!   ("type-based relos return zero when target type is not found"); aya-obj fails the load.
//! - A field offset through element 0 of a flexible array member (`&rt->fib6_nh[0]`, access
//!   string `0:27:0`): libbpf allows indexing a flexible array, aya-obj says "array index out
//!   of bounds". Element 0 starts where the member does, so the record is rewritten to the
//!   member's own access string (`0:27`) and left to aya-obj.
//!
//! What upstream aya would need: kind 12 in `RelocationKind`, a zero result for type-based
//! kinds without a target, and libbpf's flexible-array rule in `AccessSpec::new`.

use crate::btf::{self, Btf, BtfBlob, KernelBtf};
use crate::core_relo::{self, CoreRelo};
use crate::rename::{Elf, move_section};

const FIELD_BYTE_OFFSET: u32 = 0;
const TYPE_ID_TARGET: u32 = 7;
const TYPE_SIZE: u32 = 9;
const TYPE_MATCHES: u32 = 12;
/// libbpf's recursion limit for type matching.
const MATCH_DEPTH: u32 = 32;

/// What is done with one relocation record.
enum Fix {
    /// Left to aya-obj.
    Keep,
    /// The instruction's immediate becomes this value; the record is dropped.
    Patch(u64),
    /// The record's access string becomes this one.
    Access(String),
}

/// The object with the relocations aya-obj cannot apply applied; `None` when it has none.
pub(crate) fn apply(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let elf = Elf::parse(bytes)?;
    let (Some(btf_index), Some(ext_index)) = (elf.section(".BTF"), elf.section(".BTF.ext")) else {
        return Ok(None);
    };
    let btf_data = elf.contents(btf_index)?;
    let ext = elf.contents(ext_index)?;
    let local = Btf::parse(btf_data).ok_or("cannot read .BTF")?;
    let Some(records) = core_relo::records(ext, &local) else {
        return Ok(None);
    };
    let fixes = records
        .iter()
        .map(|r| fix_for(&local, r))
        .collect::<Result<Vec<_>, _>>()?;
    if fixes.iter().all(|f| matches!(f, Fix::Keep)) {
        return Ok(None);
    }
    let mut out = bytes.to_vec();
    let mut blob = BtfBlob::new(btf_data).ok_or("cannot read .BTF")?;
    let mut kept = Vec::new();
    for (record, fix) in records.iter().zip(&fixes) {
        match fix {
            Fix::Keep => kept.push((record.section_name_off, record.raw.to_vec())),
            Fix::Patch(value) => patch_insn(&mut out, &elf, record, *value)?,
            Fix::Access(access) => {
                let mut raw = record.raw.to_vec();
                raw[8..12].copy_from_slice(&blob.add_string(access).to_le_bytes());
                kept.push((record.section_name_off, raw));
            }
        }
    }
    rewrite_subsection(&mut out, &elf, ext_index, &kept)?;
    if fixes.iter().any(|f| matches!(f, Fix::Access(_))) {
        move_section(&mut out, &elf, btf_index, &blob.to_bytes());
    }
    Ok(Some(out))
}

fn fix_for(local: &Btf<'_>, r: &CoreRelo<'_>) -> Result<Fix, String> {
    Ok(match r.kind {
        TYPE_MATCHES => {
            let kernel = btf::kernel()?;
            let matched = candidates(local, r.type_id, kernel)
                .into_iter()
                .any(|target| {
                    types_match(local, &kernel.btf, r.type_id, target, false, MATCH_DEPTH)
                });
            Fix::Patch(matched.into())
        }
        TYPE_ID_TARGET | TYPE_SIZE
            if has_name(local, r.type_id)
                && candidates(local, r.type_id, btf::kernel()?).is_empty() =>
        {
            Fix::Patch(0)
        }
        FIELD_BYTE_OFFSET => match through_flexible_array(local, r.type_id, r.access) {
            Some(access) => Fix::Access(access),
            None => Fix::Keep,
        },
        _ => Fix::Keep,
    })
}

fn has_name(local: &Btf<'_>, id: u32) -> bool {
    local.get(id).is_some_and(|(_, name, _)| !name.is_empty())
}

/// The kernel types a local root type may relocate to: same essential name, compatible kind.
fn candidates(local: &Btf<'_>, id: u32, kernel: &KernelBtf) -> Vec<u32> {
    let Some(root) = local.record(id) else {
        return Vec::new();
    };
    kernel
        .named(essential_name(root.name))
        .into_iter()
        .filter(|&t| {
            kernel.btf.get(t).is_some_and(|(kind, _, _)| {
                kind == root.kind || (is_enum(kind) && is_enum(root.kind))
            })
        })
        .collect()
}

fn is_enum(kind: u32) -> bool {
    kind == btf::ENUM || kind == btf::ENUM64
}

/// A name without its flavour (`task_struct___local` → `task_struct`): libbpf cuts at the last
/// `___` that has a non-underscore on each side.
fn essential_name(name: &str) -> &str {
    let b = name.as_bytes();
    (0..b.len().saturating_sub(4))
        .rev()
        .find(|&i| b[i] != b'_' && &b[i + 1..i + 4] == b"___" && b[i + 4] != b'_')
        .map_or(name, |i| &name[..=i])
}

fn names_match(local: &str, target: &str) -> bool {
    if target.is_empty() {
        return local.is_empty();
    }
    essential_name(local) == essential_name(target)
}

/// libbpf's `__bpf_core_types_match`: whether local type `l` matches target type `t`.
fn types_match(local: &Btf<'_>, target: &Btf<'_>, l: u32, t: u32, ptr: bool, level: u32) -> bool {
    let (mut l, mut t, mut behind_ptr) = (l, t, ptr);
    if level == 0 {
        return false;
    }
    for _ in 0..MATCH_DEPTH {
        (l, t) = (local.resolve(l), target.resolve(t));
        if l == 0 || t == 0 {
            return l == t;
        }
        let (Some(lr), Some(tr)) = (local.record(l), target.record(t)) else {
            return false;
        };
        if !names_match(lr.name, tr.name) {
            return false;
        }
        let same_kind = lr.kind == tr.kind;
        match lr.kind {
            btf::FWD if behind_ptr => {
                return if same_kind {
                    lr.kflag == tr.kflag
                } else {
                    (tr.kind == btf::STRUCT && !lr.kflag) || (tr.kind == btf::UNION && lr.kflag)
                };
            }
            btf::FWD => return same_kind && lr.kflag == tr.kflag,
            btf::ENUM | btf::ENUM64 => {
                return is_enum(tr.kind) && enums_match(local, target, &lr, &tr);
            }
            btf::STRUCT | btf::UNION if behind_ptr => {
                return same_kind || (tr.kind == btf::FWD && (lr.kind == btf::UNION) == tr.kflag);
            }
            btf::STRUCT | btf::UNION => {
                return same_kind && composites_match(local, target, &lr, &tr, level);
            }
            btf::INT => {
                let signed = |b: &Btf<'_>, at: usize| b.word(at + 12).map(|w| (w >> 24) & 1);
                return same_kind
                    && lr.size_or_type == tr.size_or_type
                    && signed(local, lr.at) == signed(target, tr.at);
            }
            btf::PTR if same_kind => {
                behind_ptr = true;
                (l, t) = (lr.size_or_type, tr.size_or_type);
            }
            btf::ARRAY if same_kind => {
                // struct btf_array { type, index_type, nelems }
                let array = |b: &Btf<'_>, at: usize| (b.word(at + 12), b.word(at + 20));
                let ((le, ln), (te, tn)) = (array(local, lr.at), array(target, tr.at));
                if ln != tn {
                    return false;
                }
                let (Some(le), Some(te)) = (le, te) else {
                    return false;
                };
                (l, t) = (le, te);
            }
            btf::FUNC_PROTO if same_kind && lr.vlen == tr.vlen => {
                let param = |b: &Btf<'_>, at: usize, i: usize| b.word(at + 12 + 8 * i + 4);
                for i in 0..lr.vlen {
                    let (Some(lp), Some(tp)) = (param(local, lr.at, i), param(target, tr.at, i))
                    else {
                        return false;
                    };
                    if !types_match(local, target, lp, tp, behind_ptr, level - 1) {
                        return false;
                    }
                }
                (l, t) = (lr.size_or_type, tr.size_or_type);
            }
            _ => return false,
        }
    }
    false
}

/// Every local enumerator has a namesake in the target, and the sizes agree.
fn enums_match(
    local: &Btf<'_>,
    target: &Btf<'_>,
    lr: &btf::Record<'_>,
    tr: &btf::Record<'_>,
) -> bool {
    if lr.size_or_type != tr.size_or_type || lr.vlen > tr.vlen {
        return false;
    }
    let names = |b: &Btf<'_>, r: &btf::Record<'_>| -> Vec<String> {
        let stride = if r.kind == btf::ENUM64 { 12 } else { 8 };
        (0..r.vlen)
            .filter_map(|i| b.word(r.at + 12 + stride * i).and_then(|n| b.string(n)))
            .map(str::to_owned)
            .collect()
    };
    let theirs = names(target, tr);
    names(local, lr)
        .iter()
        .all(|mine| theirs.iter().any(|t| names_match(mine, t)))
}

/// Every local member has a namesake in the target whose type matches.
fn composites_match(
    local: &Btf<'_>,
    target: &Btf<'_>,
    lr: &btf::Record<'_>,
    tr: &btf::Record<'_>,
    level: u32,
) -> bool {
    if lr.vlen > tr.vlen {
        return false;
    }
    let (mine, theirs) = (local.members_at(lr.at), target.members_at(tr.at));
    mine.iter().all(|m| {
        theirs.iter().any(|t| {
            names_match(m.name, t.name) && types_match(local, target, m.ty, t.ty, false, level - 1)
        })
    })
}

/// For an access string that ends by taking element 0 of a flexible array member (an array of
/// 0 elements), the same string without that last step.
fn through_flexible_array(local: &Btf<'_>, root: u32, access: &str) -> Option<String> {
    let steps: Vec<usize> = access
        .split(':')
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let (&last, walk) = steps[1..].split_last()?;
    let mut current = root;
    for &index in walk {
        let record = local.record(local.resolve(current))?;
        current = match record.kind {
            btf::STRUCT | btf::UNION => local.members_at(record.at).get(index)?.ty,
            btf::ARRAY => local.word(record.at + 12)?,
            _ => return None,
        };
    }
    let array = local.record(local.resolve(current))?;
    let flexible = array.kind == btf::ARRAY && local.word(array.at + 20) == Some(0);
    (flexible && last == 0).then(|| access[..access.len() - 2].to_owned())
}

/// Writes `value` into the immediate of the instruction a relocation names: the 64-bit
/// immediate of `ld_imm64`, the 32-bit one of an ALU instruction (what libbpf patches).
fn patch_insn(out: &mut [u8], elf: &Elf<'_>, r: &CoreRelo<'_>, value: u64) -> Result<(), String> {
    let index = elf
        .section(r.section)
        .ok_or_else(|| format!("CO-RE relocation names a missing section `{}`", r.section))?;
    let (start, len) = elf.extent(index)?;
    let at = start + r.insn_off as usize;
    if r.insn_off as usize + 8 > len {
        return Err(format!(
            "CO-RE relocation past the end of section `{}`",
            r.section
        ));
    }
    let code = out[at];
    const LD_IMM64: u8 = 0x18;
    const ALU: u8 = 0x04;
    const ALU64: u8 = 0x07;
    if code == LD_IMM64 && r.insn_off as usize + 16 <= len {
        out[at + 4..at + 8].copy_from_slice(&(value as u32).to_le_bytes());
        out[at + 12..at + 16].copy_from_slice(&((value >> 32) as u32).to_le_bytes());
    } else if code & 0x07 == ALU || code & 0x07 == ALU64 {
        out[at + 4..at + 8].copy_from_slice(&(value as u32).to_le_bytes());
    } else {
        return Err(format!(
            "a CO-RE relocation of kind {} on instruction {:#04x} at {}+{} cannot be applied",
            r.kind, code, r.section, r.insn_off
        ));
    }
    Ok(())
}

/// Replaces the CO-RE relocation subsection of `.BTF.ext` with the records in `kept` (the
/// string offset of the section name, record bytes), grouped by section as before. It never grows, so it is written in place.
fn rewrite_subsection(
    out: &mut [u8],
    elf: &Elf<'_>,
    ext_index: usize,
    kept: &[(u32, Vec<u8>)],
) -> Result<(), String> {
    let ext = elf.contents(ext_index)?;
    let (start, len) = core_relo::subsection(ext).ok_or("no CO-RE relocations")?;
    let mut data = ext[start..start + 4].to_vec();
    let mut i = 0;
    while i < kept.len() {
        let name_off = kept[i].0;
        let count = kept[i..].iter().take_while(|(s, _)| *s == name_off).count();
        data.extend_from_slice(&name_off.to_le_bytes());
        data.extend_from_slice(&(count as u32).to_le_bytes());
        for (_, raw) in &kept[i..i + count] {
            data.extend_from_slice(raw);
        }
        i += count;
    }
    if data.len() > len {
        return Err("the CO-RE relocation subsection of .BTF.ext is damaged".into());
    }
    let (ext_at, _) = elf.extent(ext_index)?;
    out[ext_at + start..ext_at + start + data.len()].copy_from_slice(&data);
    out[ext_at + 28..ext_at + 32].copy_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::essential_name;

    #[test]
    fn flavours_are_cut_at_the_last_separator_like_libbpf() {
        assert_eq!(essential_name("task_struct___local"), "task_struct");
        assert_eq!(essential_name("a___b___c"), "a___b");
        assert_eq!(essential_name("task_struct"), "task_struct");
        // Four underscores or a leading separator are no flavour.
        assert_eq!(essential_name("a____b"), "a____b");
        assert_eq!(essential_name("___x"), "___x");
        assert_eq!(essential_name(""), "");
    }
}
