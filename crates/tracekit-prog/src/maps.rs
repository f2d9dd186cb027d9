//! Maps as bytes: filling them before a test run (`--map NAME=FILE.json`) and reading every
//! entry after it (`--dump-maps`), whatever their key and value types. Typed access is aya's
//! ([`Program::map`](crate::Program::map)).

use crate::{Error, hex, sys};
use serde::Serialize;
use std::os::fd::{AsFd, OwnedFd};

/// The facts about a map the byte-level calls need.
#[derive(Debug)]
pub(crate) struct RawMap {
    pub fd: OwnedFd,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl RawMap {
    /// Per-CPU maps hold one value per possible CPU, each padded to 8 bytes.
    fn per_cpu(&self) -> bool {
        use aya_obj::generated::bpf_map_type as M;
        [
            M::BPF_MAP_TYPE_PERCPU_ARRAY,
            M::BPF_MAP_TYPE_PERCPU_HASH,
            M::BPF_MAP_TYPE_LRU_PERCPU_HASH,
            M::BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
        ]
        .iter()
        .any(|&t| t as u32 == self.map_type)
    }

    /// The size of a value as user space reads and writes it.
    fn user_value_size(&self) -> Result<usize, Error> {
        if !self.per_cpu() {
            return Ok(self.value_size as usize);
        }
        Ok(self.value_size.next_multiple_of(8) as usize * possible_cpus()?)
    }
}

fn possible_cpus() -> Result<usize, Error> {
    aya::util::nr_cpus().map_err(|(path, e)| Error::Map {
        name: String::new(),
        reason: format!("cannot read {path}: {e}"),
    })
}

/// One entry of a map, as bytes (hex in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapEntry {
    /// The key.
    #[serde(serialize_with = "as_hex")]
    pub key: Vec<u8>,
    /// The value (for per-CPU maps, every CPU's value one after the other, each padded to 8
    /// bytes).
    #[serde(serialize_with = "as_hex")]
    pub value: Vec<u8>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Every entry of one map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapDump {
    /// The map's name (global data sections are `.data`, `.bss`, ...).
    pub name: String,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (of one CPU's value for per-CPU maps).
    pub value_size: u32,
    /// Whether each value holds one slot per CPU.
    pub per_cpu: bool,
    /// The entries, in the kernel's iteration order.
    pub entries: Vec<MapEntry>,
    /// Why the map could not be read, when it could not (ring buffers, perf event arrays,
    /// stacks and queues have no key to look up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl std::fmt::Display for MapDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_cpu = if self.per_cpu { ", per CPU" } else { "" };
        writeln!(
            f,
            " map {} (key {} B, value {} B{per_cpu}): {} entries",
            self.name,
            self.key_size,
            self.value_size,
            self.entries.len()
        )?;
        if let Some(why) = &self.unreadable {
            return writeln!(f, "   not readable: {why}");
        }
        for e in &self.entries {
            writeln!(f, "   {} => {}", hex::encode(&e.key), hex::encode(&e.value))?;
        }
        Ok(())
    }
}

/// Reads every entry of a map.
pub(crate) fn dump(name: &str, map: &RawMap) -> Result<MapDump, Error> {
    let err = |reason: String| Error::Map {
        name: name.to_owned(),
        reason,
    };
    let value_size = map.user_value_size()?;
    let mut dump = MapDump {
        name: name.to_owned(),
        key_size: map.key_size,
        value_size: map.value_size,
        per_cpu: map.per_cpu(),
        entries: Vec::new(),
        unreadable: None,
    };
    if map.key_size == 0 {
        dump.unreadable = Some("the map has no keys (ring buffer, queue, stack, ...)".into());
        return Ok(dump);
    }
    let mut key: Option<Vec<u8>> = None;
    // Bounded: a hash map that changes while it is walked could otherwise restart forever.
    for _ in 0..=map.max_entries {
        let mut next = vec![0u8; map.key_size as usize];
        match sys::map_next_key(map.fd.as_fd(), key.as_deref(), &mut next) {
            Ok(true) => {}
            Ok(false) => return Ok(dump),
            Err(e) => {
                dump.unreadable = Some(format!("BPF_MAP_GET_NEXT_KEY: {e}"));
                return Ok(dump);
            }
        }
        let mut value = vec![0u8; value_size];
        match sys::map_lookup(map.fd.as_fd(), &next, &mut value) {
            Ok(true) => dump.entries.push(MapEntry {
                key: next.clone(),
                value,
            }),
            Ok(false) => {}
            Err(e) => {
                dump.unreadable = Some(format!("BPF_MAP_LOOKUP_ELEM: {e}"));
                return Ok(dump);
            }
        }
        key = Some(next);
    }
    Err(err(format!(
        "more than max_entries ({}) keys",
        map.max_entries
    )))
}

/// Writes entries into a map (`BPF_ANY`: created or replaced).
pub(crate) fn fill(name: &str, map: &RawMap, entries: &[MapEntry]) -> Result<(), Error> {
    for e in entries {
        sys::map_update(map.fd.as_fd(), &e.key, &e.value).map_err(|io| Error::Map {
            name: name.to_owned(),
            reason: format!("cannot write key {}: {io}", hex::encode(&e.key)),
        })?;
    }
    Ok(())
}

/// Reads a JSON list of `{"key": K, "value": V}` for a map: K and V are hex strings of exactly
/// the key and value size, or unsigned integers (little-endian, as the program sees them). A
/// per-CPU map's value is given once (every CPU gets it) or as a list with one per CPU.
pub(crate) fn parse_entries(name: &str, map: &RawMap, json: &str) -> Result<Vec<MapEntry>, Error> {
    let err = |reason: String| Error::Map {
        name: name.to_owned(),
        reason,
    };
    let list: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| {
        err(format!(
            "not a JSON list of {{\"key\": ..., \"value\": ...}}: {e}"
        ))
    })?;
    let cpus = if map.per_cpu() { possible_cpus()? } else { 1 };
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |f: &str| {
                item.get(f)
                    .ok_or_else(|| err(format!("entry {i} has no \"{f}\"")))
            };
            let key = bytes(field("key")?, map.key_size as usize)
                .map_err(|e| err(format!("entry {i} key: {e}")))?;
            let slot = if map.per_cpu() {
                map.value_size.next_multiple_of(8)
            } else {
                map.value_size
            } as usize;
            let values: Vec<&serde_json::Value> = match field("value")? {
                serde_json::Value::Array(per_cpu) if map.per_cpu() => per_cpu.iter().collect(),
                one => vec![one; cpus],
            };
            if values.len() != cpus {
                return Err(err(format!(
                    "entry {i} gives {} values; the map has one per CPU ({cpus})",
                    values.len()
                )));
            }
            let mut value = Vec::with_capacity(slot * cpus);
            for v in values {
                let mut b = bytes(v, map.value_size as usize)
                    .map_err(|e| err(format!("entry {i} value: {e}")))?;
                b.resize(slot, 0);
                value.extend(b);
            }
            Ok(MapEntry { key, value })
        })
        .collect()
}

/// A key or value: a hex string of exactly `size` bytes, or an unsigned integer that fits.
fn bytes(v: &serde_json::Value, size: usize) -> Result<Vec<u8>, String> {
    match v {
        serde_json::Value::String(text) => {
            let b = hex::parse(text).map_err(|e| e.to_string())?;
            if b.len() != size {
                return Err(format!(
                    "{} bytes of hex, the map's size is {size}",
                    b.len()
                ));
            }
            Ok(b)
        }
        serde_json::Value::Number(n) => {
            let n = n.as_u64().ok_or("a number must be a whole number >= 0")?;
            let le = n.to_le_bytes();
            if size < 8 && n >> (8 * size) != 0 {
                return Err(format!("{n} does not fit in {size} bytes"));
            }
            let mut b = le[..size.min(8)].to_vec();
            b.resize(size, 0);
            Ok(b)
        }
        _ => Err("give a hex string or a number".into()),
    }
}
