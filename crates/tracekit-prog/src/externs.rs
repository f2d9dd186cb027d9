//! kfunc and `__ksym` externs, resolved against the kernel's BTF as libbpf resolves them, in a
//! copy of the ELF, before aya-obj (which cannot parse them) sees it.
//!
//! clang leaves a call of a kfunc as `call -1` with a relocation against an undefined symbol,
//! and an address of a `__ksym` variable as `ld_imm64` with one; BTF holds them in a `.ksyms`
//! DATASEC of size 0 with extern linkage, which aya-obj cannot size and the kernel refuses.
//! Here each call becomes a kfunc call (`src_reg` `BPF_PSEUDO_KFUNC_CALL`, `imm` the kernel
//! BTF id), each `ld_imm64` a `BPF_PSEUDO_BTF_ID` load, their relocations are dropped, and the
//! BTF is made loadable the way libbpf makes it: the DATASEC's entries become one dummy `int`
//! variable each, and the externs' linkage is made one the kernel accepts.

use crate::btf::{self, Btf, BtfBlob};
use crate::rename::{Elf, move_section, u32_at, u64_at};
use aya_obj::btf::{Btf as KernelBtf, BtfKind};
use std::collections::HashMap;

const KSYMS: &str = ".ksyms";
const SHT_REL: u32 = 9;
const BPF_PSEUDO_BTF_ID: u8 = 3;
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;
/// The helper id of a call that must never run (libbpf's and aya-obj's poison).
const POISON: u32 = 0xbad2310;

/// Whether the object has kfunc or `__ksym` externs to resolve.
pub(crate) fn has_ksyms(bytes: &[u8]) -> bool {
    let Ok(elf) = Elf::parse(bytes) else {
        return false;
    };
    let btf = elf.section(".BTF").and_then(|i| elf.contents(i).ok());
    btf.and_then(Btf::parse)
        .is_some_and(|b| b.datasec(KSYMS).is_some())
}

/// What an extern is in the object's BTF.
#[derive(Clone, Copy, PartialEq)]
enum Extern {
    Func,
    Var,
    /// `extern const void sym __ksym;`: only an address, which libbpf takes from kallsyms.
    Address,
}

/// The object with every kfunc and `__ksym` resolved against `kernel`.
pub(crate) fn resolve(bytes: &[u8], kernel: &KernelBtf) -> Result<Vec<u8>, String> {
    let elf = Elf::parse(bytes)?;
    let btf_index = elf.section(".BTF").ok_or("no .BTF section")?;
    let btf_data = elf.contents(btf_index)?;
    let local = Btf::parse(btf_data).ok_or("cannot read .BTF")?;
    let ksyms = local.datasec(KSYMS).ok_or("no .ksyms in .BTF")?;
    let externs: HashMap<&str, Extern> = local
        .datasec_entries(ksyms)
        .into_iter()
        .filter_map(|(id, _)| {
            let (kind, name, at) = local.get(id)?;
            // `const void`: the type is void behind qualifiers.
            let typeless =
                kind == btf::VAR && local.resolve(u32_at(local.types, at + 8).ok()?) == 0;
            let kind = match kind {
                btf::FUNC => Extern::Func,
                _ if typeless => Extern::Address,
                _ => Extern::Var,
            };
            Some((name, kind))
        })
        .collect();
    let mut out = bytes.to_vec();
    let symbols = Symbols::read(&elf)?;
    let mut kallsyms = Kallsyms::default();
    for rel in (0..elf.count()).filter(|&i| elf.header_u32(i, 4) == SHT_REL) {
        let target = elf.header_u32(rel, 44) as usize;
        if target == 0 || target >= elf.count() {
            continue;
        }
        let (code_at, _) = elf.extent(target)?;
        let mut kept = Vec::new();
        for entry in elf.contents(rel)?.chunks_exact(16) {
            let offset = u64_at(entry, 0)? as usize;
            let symbol = (u64_at(entry, 8)? >> 32) as usize;
            let resolved = match symbols
                .undefined(symbol)
                .and_then(|name| Some((name, *externs.get(name)?)))
            {
                Some((name, kind)) => patch(
                    &mut out,
                    code_at + offset,
                    (name, kind, symbols.weak(symbol)),
                    kernel,
                    &mut kallsyms,
                )?,
                None => false,
            };
            if !resolved {
                kept.extend_from_slice(entry);
            }
        }
        if kept.len() != elf.contents(rel)?.len() {
            move_section(&mut out, &elf, rel, &kept);
        }
    }
    let fixed = loadable_btf(btf_data, &local, ksyms).ok_or("cannot rewrite .BTF")?;
    move_section(&mut out, &elf, btf_index, &fixed);
    Ok(out)
}

/// Rewrites the instruction at `at` for extern `name` (of `kind`, weak or not); `false` when it
/// is not one to rewrite.
fn patch(
    out: &mut [u8],
    at: usize,
    (name, kind, weak): (&str, Extern, bool),
    kernel: &KernelBtf,
    kallsyms: &mut Kallsyms,
) -> Result<bool, String> {
    let insn = out
        .get_mut(at..at + 16)
        .ok_or("relocation outside its section")?;
    if kind == Extern::Address {
        if insn[0] != 0x18 {
            return Ok(false);
        }
        let addr = match kallsyms.address(name)? {
            Some(addr) => addr,
            None if weak => 0,
            None => return Err(format!("/proc/kallsyms has no symbol '{name}'")),
        };
        insn[1] &= 0x0f;
        insn[4..8].copy_from_slice(&(addr as u32).to_le_bytes());
        insn[12..16].copy_from_slice(&((addr >> 32) as u32).to_le_bytes());
        return Ok(true);
    }
    let (btf_kind, what) = match kind {
        Extern::Func => (BtfKind::Func, "kfunc"),
        _ => (BtfKind::Var, "__ksym variable"),
    };
    let id = match kernel.id_by_type_name_kind(name, btf_kind) {
        Ok(id) => id,
        Err(_) if weak => 0,
        Err(_) => {
            return Err(format!(
                "the kernel's BTF has no {what} '{name}' (is its module loaded?)"
            ));
        }
    };
    match (kind, insn[0]) {
        (Extern::Func, 0x85) if id == 0 => {
            // A weak kfunc the kernel lacks: a call that must be dead code, as libbpf makes it.
            insn[1] = 0;
            insn[4..8].copy_from_slice(&POISON.to_le_bytes());
        }
        (Extern::Func, 0x85) => {
            insn[1] = BPF_PSEUDO_KFUNC_CALL << 4;
            insn[2..4].fill(0);
            insn[4..8].copy_from_slice(&id.to_le_bytes());
        }
        (Extern::Var, 0x18) => {
            // ld_imm64: the BTF id in the first half, the BTF object (0: vmlinux) in the second.
            insn[1] = (insn[1] & 0x0f) | if id == 0 { 0 } else { BPF_PSEUDO_BTF_ID << 4 };
            insn[4..8].copy_from_slice(&id.to_le_bytes());
            insn[12..16].fill(0);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The object's BTF as the kernel accepts it: `.ksyms` entries replaced by dummy `int`
/// variables at consecutive offsets, extern functions made static and extern variables
/// global (the kernel refuses extern linkage).
fn loadable_btf(data: &[u8], local: &Btf<'_>, ksyms: u32) -> Option<Vec<u8>> {
    let mut blob = BtfBlob::new(data)?;
    let entries = local.datasec_entries(ksyms);
    let int_name = blob.add_string("int");
    // INT: name, info (kind 1), size 4, encoding signed, 32 bits.
    let int = blob.add_type(&[int_name, btf::INT << 24, 4, (1 << 24) | 32]);
    let var_name = blob.add_string("__tracekit_ksym");
    // VAR: name, info (kind 14), type, linkage global allocated.
    let var = blob.add_type(&[var_name, btf::VAR << 24, int, 1]);
    for &(id, _) in &entries {
        let (kind, _, at) = local.get(id)?;
        match kind {
            btf::FUNC => blob.patch(at + 4, btf::FUNC << 24),
            btf::VAR => {
                // A typeless ksym is `const void`, which no variable may be.
                blob.patch(at + 8, int);
                blob.patch(at + 12, 1);
            }
            _ => {}
        }
    }
    let (_, _, datasec_at) = local.get(ksyms)?;
    blob.patch(datasec_at + 8, 4 * entries.len() as u32);
    for (i, &(_, entry_at)) in entries.iter().enumerate() {
        blob.patch(entry_at, var);
        blob.patch(entry_at + 4, 4 * i as u32);
        blob.patch(entry_at + 8, 4);
    }
    Some(blob.to_bytes())
}

/// /proc/kallsyms, read when the first typeless ksym needs it and kept for the others.
#[derive(Default)]
struct Kallsyms(Option<HashMap<String, u64>>);

impl Kallsyms {
    /// The kernel address of `name` (root sees real addresses).
    fn address(&mut self, name: &str) -> Result<Option<u64>, String> {
        if self.0.is_none() {
            let text = std::fs::read_to_string("/proc/kallsyms")
                .map_err(|e| format!("typeless __ksym externs need /proc/kallsyms: {e}"))?;
            let mut table = HashMap::new();
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                let (Some(addr), Some(_), Some(sym)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                if let Ok(addr) = u64::from_str_radix(addr, 16) {
                    // The first of several symbols of one name, as a search from the top finds.
                    table.entry(sym.to_owned()).or_insert(addr);
                }
            }
            self.0 = Some(table);
        }
        Ok(self.0.as_ref().and_then(|t| t.get(name).copied()))
    }
}

/// The symbol table: names of undefined symbols and their binding.
struct Symbols<'a> {
    table: &'a [u8],
    names: &'a [u8],
}

impl<'a> Symbols<'a> {
    fn read(elf: &Elf<'a>) -> Result<Symbols<'a>, String> {
        let index = elf.symtab()?;
        let names = elf.header_u32(index, 40) as usize;
        Ok(Symbols {
            table: elf.contents(index)?,
            names: elf.contents(names)?,
        })
    }

    /// The name of symbol `index` when it is undefined (an extern).
    fn undefined(&self, index: usize) -> Option<&'a str> {
        let sym = self.table.get(index * 24..index * 24 + 24)?;
        let shndx = u16::from_le_bytes([sym[6], sym[7]]);
        if shndx != 0 {
            return None;
        }
        crate::rename::c_str(self.names, u32_at(sym, 0).ok()? as usize)
    }

    fn weak(&self, index: usize) -> bool {
        self.table
            .get(index * 24 + 4)
            .is_some_and(|info| info >> 4 == 2)
    }
}

/// Hidden global functions (`__hidden`, as libbpf's usdt.bpf.h declares its helpers) made
/// static in BTF, as libbpf does: the verifier then checks them in their callers' context
/// instead of on their own, where a pointer argument could be NULL. `None` when there are none.
pub(crate) fn hidden_functions_static(bytes: &[u8]) -> Option<Vec<u8>> {
    const STT_FUNC: u8 = 2;
    const STV_HIDDEN: u8 = 2;
    let elf = Elf::parse(bytes).ok()?;
    let btf_index = elf.section(".BTF")?;
    let local = Btf::parse(elf.contents(btf_index).ok()?)?;
    let symtab = elf.symtab().ok()?;
    let names = elf.contents(elf.header_u32(symtab, 40) as usize).ok()?;
    let hidden: Vec<&str> = elf
        .contents(symtab)
        .ok()?
        .chunks_exact(24)
        .filter(|s| s[4] & 0xf == STT_FUNC && s[5] & 3 == STV_HIDDEN && s[6..8] != [0, 0])
        .filter_map(|s| crate::rename::c_str(names, u32_at(s, 0).ok()? as usize))
        .collect();
    let mut blob = BtfBlob::new(elf.contents(btf_index).ok()?)?;
    let mut changed = false;
    for id in 1..=local.count() {
        if let Some((btf::FUNC, name, at)) = local.get(id) {
            let global = u32_at(local.types, at + 4).ok()? & 0xffff == 1;
            if global && hidden.contains(&name) {
                blob.patch(at + 4, btf::FUNC << 24);
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    let mut out = bytes.to_vec();
    move_section(&mut out, &elf, btf_index, &blob.to_bytes());
    Some(out)
}
