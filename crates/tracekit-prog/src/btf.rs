//! Just enough of BTF to read and edit an object's own `.BTF`: type records by id, names,
//! struct members, and appending types and strings (for the loader's fix-ups of what aya-obj
//! cannot parse, and for naming CO-RE relocations).

/// Just enough of a BTF blob to name types and members.
pub(crate) struct Btf<'a> {
    /// Start of each type's record in `types` (index = type id - 1).
    offsets: Vec<usize>,
    /// The type section.
    pub types: &'a [u8],
    strings: &'a [u8],
}

pub(crate) const INT: u32 = 1;
/// `BTF_KIND_PTR`.
pub(crate) const PTR: u32 = 2;
pub(crate) const ARRAY: u32 = 3;
pub(crate) const STRUCT: u32 = 4;
pub(crate) const UNION: u32 = 5;
pub(crate) const ENUM: u32 = 6;
pub(crate) const FWD: u32 = 7;
pub(crate) const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
/// `BTF_KIND_FUNC`.
pub(crate) const FUNC: u32 = 12;
/// `BTF_KIND_VAR`.
pub(crate) const VAR: u32 = 14;
/// `BTF_KIND_DATASEC`.
pub(crate) const DATASEC: u32 = 15;
/// `BTF_KIND_FUNC_PROTO`.
pub(crate) const FUNC_PROTO: u32 = 13;
const TYPE_TAG: u32 = 18;
/// `struct btf_header`: magic, version, flags, hdr_len, then the type and string sections'
/// offsets and lengths.
const HEADER_LEN: usize = 24;
pub(crate) const ENUM64: u32 = 19;

impl<'a> Btf<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Option<Btf<'a>> {
        let hdr_len = u32_at(data, 4)? as usize;
        // A header shorter than the fields read here is damage ([`BtfBlob::to_bytes`] rewrites
        // them in place); a longer one (a newer kernel's) is fine.
        if hdr_len < HEADER_LEN {
            return None;
        }
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

    pub(crate) fn string(&self, off: u32) -> Option<&'a str> {
        let rest = self.strings.get(off as usize..)?;
        std::str::from_utf8(&rest[..rest.iter().position(|&b| b == 0)?]).ok()
    }

    /// (kind, name, record offset) of a type id.
    pub(crate) fn get(&self, id: u32) -> Option<(u32, &'a str, usize)> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)?;
        let kind = (u32_at(self.types, at + 4)? >> 24) & 0x1f;
        Some((kind, self.string(u32_at(self.types, at)?)?, at))
    }

    /// The fixed part of type `id`'s record.
    pub(crate) fn record(&self, id: u32) -> Option<Record<'a>> {
        let (kind, name, at) = self.get(id)?;
        let info = u32_at(self.types, at + 4)?;
        Some(Record {
            kind,
            name,
            vlen: (info & 0xffff) as usize,
            kflag: info >> 31 == 1,
            size_or_type: u32_at(self.types, at + 8)?,
            at,
        })
    }

    /// The u32 at `at` in the type section (a record's variable part).
    pub(crate) fn word(&self, at: usize) -> Option<u32> {
        u32_at(self.types, at)
    }

    /// How many types there are (ids 1..=count).
    pub(crate) fn count(&self) -> u32 {
        self.offsets.len() as u32
    }

    /// The id of the DATASEC named `name`.
    pub(crate) fn datasec(&self, name: &str) -> Option<u32> {
        (1..=self.count()).find(|&id| {
            self.get(id)
                .is_some_and(|(k, n, _)| k == DATASEC && n == name)
        })
    }

    /// The entries (type id, offset in the type section of the entry) of a DATASEC.
    pub(crate) fn datasec_entries(&self, id: u32) -> Vec<(u32, usize)> {
        let Some((DATASEC, _, at)) = self.get(id) else {
            return Vec::new();
        };
        let vlen = u32_at(self.types, at + 4).unwrap_or(0) & 0xffff;
        (0..vlen as usize)
            .filter_map(|i| {
                let entry = at + 12 + 12 * i;
                Some((u32_at(self.types, entry)?, entry))
            })
            .collect()
    }

    /// The type a pointer, variable, typedef or qualifier refers to.
    pub(crate) fn referenced(&self, id: u32) -> Option<u32> {
        u32_at(self.types, self.get(id)?.2 + 8)
    }

    /// The element type of an array (behind typedefs and qualifiers).
    pub(crate) fn array_element(&self, id: u32) -> Option<u32> {
        match self.get(self.resolve(id))? {
            (ARRAY, _, at) => u32_at(self.types, at + 12),
            _ => None,
        }
    }

    /// The members of a struct or union (behind typedefs and qualifiers).
    pub(crate) fn members(&self, id: u32) -> Vec<Member<'a>> {
        match self.get(self.resolve(id)) {
            Some((STRUCT | UNION, _, at)) => self.members_at(at),
            _ => Vec::new(),
        }
    }

    /// The members of the struct or union whose record is at `at`.
    pub(crate) fn members_at(&self, at: usize) -> Vec<Member<'a>> {
        let info = u32_at(self.types, at + 4).unwrap_or(0);
        let bitfields = info >> 31 == 1;
        (0..(info & 0xffff) as usize)
            .filter_map(|i| {
                let m = at + 12 + 12 * i;
                let offset = u32_at(self.types, m + 8)?;
                Some(Member {
                    name: self.string(u32_at(self.types, m)?)?,
                    ty: u32_at(self.types, m + 4)?,
                    bit_offset: if bitfields {
                        offset & 0xff_ffff
                    } else {
                        offset
                    },
                    record: m,
                })
            })
            .collect()
    }

    /// The type behind typedefs and qualifiers.
    pub(crate) fn resolve(&self, mut id: u32) -> u32 {
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
    pub(crate) fn access_path(&self, id: u32, access: &str) -> String {
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

/// The fixed part of a type record: `struct btf_type`.
pub(crate) struct Record<'a> {
    pub kind: u32,
    pub name: &'a str,
    pub vlen: usize,
    pub kflag: bool,
    /// The size of an int, enum, struct or union; the referenced type of the others.
    pub size_or_type: u32,
    /// Offset of the record in the type section; its variable part starts 12 bytes later.
    pub at: usize,
}

/// A member of a struct or union.
pub(crate) struct Member<'a> {
    pub name: &'a str,
    pub ty: u32,
    pub bit_offset: u32,
    /// Offset of the member's record in the type section (its name offset comes first).
    pub record: usize,
}

/// The kernel's BTF (`/sys/kernel/btf/vmlinux`) with its types indexed by name.
pub(crate) struct KernelBtf {
    pub btf: Btf<'static>,
    by_name: std::collections::HashMap<&'static str, Vec<u32>>,
}

impl KernelBtf {
    /// The ids of the types named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<u32> {
        self.by_name.get(name).cloned().unwrap_or_default()
    }
}

/// The kernel's BTF in the crate's own reader (aya-obj's does not show struct members), read
/// and indexed once per process (~30 ms): it does not change while the kernel runs.
pub(crate) fn kernel() -> Result<&'static KernelBtf, String> {
    static BYTES: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    static PARSED: std::sync::OnceLock<Result<KernelBtf, String>> = std::sync::OnceLock::new();
    const PATH: &str = "/sys/kernel/btf/vmlinux";
    PARSED
        .get_or_init(|| {
            let bytes = BYTES
                .get_or_init(|| std::fs::read(PATH).map_err(|e| format!("{PATH}: {e}")))
                .as_ref()
                .map_err(Clone::clone)?;
            let btf = Btf::parse(bytes).ok_or_else(|| format!("{PATH}: not BTF"))?;
            let mut by_name = std::collections::HashMap::<&str, Vec<u32>>::new();
            for id in 1..=btf.count() {
                if let Some((_, name, _)) = btf.get(id) {
                    by_name.entry(name).or_default().push(id);
                }
            }
            Ok(KernelBtf { btf, by_name })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A `.BTF` blob being edited: types and strings can be appended and type records patched.
pub(crate) struct BtfBlob {
    header: Vec<u8>,
    /// The type section (offsets into it are what [`Btf::get`] returns).
    pub types: Vec<u8>,
    strings: Vec<u8>,
    count: u32,
}

impl BtfBlob {
    /// A copy of `data` to edit.
    pub(crate) fn new(data: &[u8]) -> Option<BtfBlob> {
        let btf = Btf::parse(data)?;
        let hdr_len = u32_at(data, 4)? as usize;
        Some(BtfBlob {
            header: data.get(..hdr_len)?.to_vec(),
            types: btf.types.to_vec(),
            strings: btf.strings.to_vec(),
            count: btf.count(),
        })
    }

    /// Appends a string; returns its offset.
    pub(crate) fn add_string(&mut self, s: &str) -> u32 {
        let at = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        at
    }

    /// Appends a type record; returns its id.
    pub(crate) fn add_type(&mut self, record: &[u32]) -> u32 {
        for v in record {
            self.types.extend_from_slice(&v.to_le_bytes());
        }
        self.count += 1;
        self.count
    }

    /// Overwrites the u32 at `at` in the type section.
    pub(crate) fn patch(&mut self, at: usize, value: u32) {
        self.types[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// The blob: the header with the new section sizes, types, then strings.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        let sizes = [
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ];
        for (k, v) in sizes.iter().enumerate() {
            out[8 + 4 * k..12 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}
