//! Loading one program of an object the way libbpf does, on aya-obj's parser and relocator:
//! BTF loaded into the kernel, CO-RE relocations against the kernel's BTF, every map created
//! (global-data sections with their BTF, so `bpf_spin_lock` in `.data.*` works), map and call
//! relocations, then `BPF_PROG_LOAD` with the type, attach type and flags of libbpf's section
//! table. aya 0.14's own loader cannot do this: it knows only its own section names and types,
//! and creates global-data maps without BTF.

use crate::init_values::{Slot, SlotValue};
use crate::maps::RawMap;
use crate::section::SectionType;
use crate::struct_ops::Implements;
use crate::sys::{self, MapCreate, ProgLoad};
use crate::{Error, ProgramEntry};
use aya::maps::{Map, MapData};
use aya_obj::btf::{Btf, BtfKind};
use aya_obj::generated::bpf_map_type as M;
use aya_obj::{EbpfSectionKind, Object};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A loaded program and the maps created for it.
pub(crate) struct Loaded {
    pub fd: OwnedFd,
    pub maps: HashMap<String, LoadedMap>,
}

/// A map of a program: aya's typed handle, and what byte-level access needs.
#[derive(Debug)]
pub(crate) struct LoadedMap {
    pub typed: Map,
    pub raw: RawMap,
}

/// The object as aya-obj can parse it and the kernel can load it, once per object: the
/// externs resolved (kfuncs and `__ksym`s against the kernel's BTF, `__kconfig` values) and
/// hidden functions made static, as libbpf does. `bytes` has its sections already renamed
/// for aya-obj.
pub(crate) fn prepare(bytes: &[u8]) -> Result<Prepared, String> {
    let mut bytes = bytes.to_vec();
    if let Some(fixed) = crate::core_fixups::apply(&bytes)? {
        bytes = fixed;
    }
    let slots = crate::init_values::read(&bytes)?;
    if let Some(fixed) = crate::init_values::hide_prog_array_values(&bytes) {
        bytes = fixed;
    }
    if crate::externs::has_ksyms(&bytes) {
        bytes = crate::externs::resolve(&bytes, kernel_btf()?)?;
    }
    if let Some(fixed) = crate::externs::hidden_functions_static(&bytes) {
        bytes = fixed;
    }
    if crate::kconfig::has_kconfig(&bytes) {
        bytes = crate::kconfig::resolve(&bytes)?;
    }
    let struct_ops = crate::struct_ops::implemented(&bytes)?;
    Ok(Prepared {
        bytes,
        slots,
        struct_ops,
    })
}

/// An object ready for aya-obj and the kernel, with the initial values of its maps.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
    /// The kernel struct member each struct_ops program implements.
    struct_ops: HashMap<String, Implements>,
}

/// Loads program `entry` of the object `prepared`; `what` names the object in errors. The
/// programs of the object that its prog arrays hold from the start (`programs` lists them
/// all) are loaded too, as libbpf loads them, and put in their slots.
pub(crate) fn load(
    what: &str,
    prepared: &Prepared,
    entry: &ProgramEntry,
    ty: &SectionType,
    programs: &[ProgramEntry],
) -> Result<Loaded, Error> {
    let bytes = &prepared.bytes;
    let fail = |reason: String| Error::Load {
        name: entry.name.clone(),
        reason,
    };
    let damaged = |step: &str, panic: String| damaged(what, step, panic);
    let mut obj = parse(what, bytes)?;
    let btf_fd = load_object_btf(sanitized_btf(what, &mut obj)?).map_err(fail)?;
    if obj.has_btf_relocations() {
        let kernel = kernel_btf().map_err(fail)?;
        guarded(|| obj.relocate_btf(kernel))
            .map_err(|p| damaged("applying its CO-RE relocations (.BTF.ext)", p))?
            .map_err(|e| {
                fail(format!(
                    "CO-RE relocation failed: {}",
                    tracekit_core::errors::chain(&e)
                ))
            })?;
    }
    let maps = create_maps(&mut obj, btf_fd.as_ref()).map_err(fail)?;
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    guarded(|| {
        obj.relocate_maps(
            maps.iter()
                .map(|m| (m.name.as_str(), m.fd.as_raw_fd(), &m.obj)),
            &text_sections,
        )
    })
    .map_err(|p| damaged("relocating its map references", p))?
    .map_err(|e| fail(tracekit_core::errors::chain(&e)))?;
    guarded(|| obj.relocate_calls(&text_sections))
        .map_err(|p| damaged("relocating its calls", p))?
        .map_err(|e| fail(tracekit_core::errors::chain(&e)))?;
    obj.sanitize_functions(aya::features());
    fill_map_slots(&maps, &prepared.slots).map_err(fail)?;
    let fd = load_program(prepared, &obj, entry, ty, btf_fd.as_ref())?;
    let others = Others {
        prepared,
        obj: &obj,
        programs,
        btf: btf_fd.as_ref(),
    };
    fill_program_slots(&maps, &prepared.slots, (&entry.name, fd.as_fd()), &others).map_err(fail)?;
    let maps = maps
        .into_iter()
        .map(|m| {
            let data = MapData::from_fd(m.fd).map_err(|e| tracekit_core::errors::chain(&e))?;
            Ok((m.name, opened_map(data)?))
        })
        .collect::<Result<_, String>>()
        .map_err(fail)?;
    Ok(Loaded { fd, maps })
}

/// Runs, for a prepared object, every step of [`load`] that reads the object and needs no
/// kernel object: aya-obj's parse, its BTF fix-up, CO-RE relocation against the kernel's BTF (when it can be
/// read) and call relocation. A damaged object fails here as it would when loaded.
pub(crate) fn check(what: &str, prepared: &Prepared) -> Result<(), Error> {
    let mut obj = parse(what, &prepared.bytes)?;
    sanitized_btf(what, &mut obj)?;
    if obj.has_btf_relocations()
        && let Ok(kernel) = kernel_btf()
    {
        // Only a panic matters here: a relocation error is the kernel's BTF disagreeing.
        guarded(|| obj.relocate_btf(kernel))
            .map_err(|p| damaged(what, "applying its CO-RE relocations (.BTF.ext)", p))?
            .ok();
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    guarded(|| obj.relocate_calls(&text_sections))
        .map_err(|p| damaged(what, "relocating its calls", p))?
        .map_err(|e| Error::Parse {
            what: what.to_owned(),
            reason: tracekit_core::errors::chain(&e),
        })
}

/// aya-obj's parse of the object's sections, symbols and BTF, a panic in it made an error.
fn parse(what: &str, bytes: &[u8]) -> Result<Object, Error> {
    guarded(|| Object::parse(bytes))
        .map_err(|p| damaged(what, "reading its sections, symbols and BTF", p))?
        .map_err(|e| Error::Parse {
            what: what.to_owned(),
            reason: tracekit_core::errors::chain(&e),
        })
}

/// The error for a panic of aya-obj in `step` on object `what`.
fn damaged(what: &str, step: &str, panic: String) -> Error {
    Error::Parse {
        what: what.to_owned(),
        reason: format!("the object is damaged: aya-obj failed while {step} ({panic})"),
    }
}

/// Runs one aya-obj step, turning a panic in it into its message. aya-obj 0.3 indexes slices
/// with offsets and lengths read from the file without checking them, so a damaged object
/// panics it (found by mutating objects: obj.rs:675, btf.rs:1095); tracekit must say the file
/// is damaged instead. While the step runs, the panic hook is silenced, so the message is not
/// printed as a crash; a panic of another thread in that moment would lose its message only.
fn guarded<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step));
    std::panic::set_hook(hook);
    result.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "no message".into())
    })
}

/// The kernel's own BTF (`/sys/kernel/btf/vmlinux`), parsed when first needed (~25 ms) and
/// kept for the process: it does not change while the kernel runs.
fn kernel_btf() -> Result<&'static Btf, String> {
    static KERNEL_BTF: std::sync::OnceLock<Result<Btf, String>> = std::sync::OnceLock::new();
    KERNEL_BTF
        .get_or_init(|| {
            Btf::from_sys_fs()
                .map_err(|e| format!("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The object's BTF as this kernel takes it (aya-obj's fix-ups: datasec sizes, types the
/// kernel lacks replaced), or `None` when the kernel or the object has no BTF. aya-obj's
/// fix-up reads names at offsets from the file unchecked (btf.rs:423), so it runs guarded.
fn sanitized_btf(what: &str, obj: &mut Object) -> Result<Option<Vec<u8>>, Error> {
    let Some(features) = aya::features().btf() else {
        return Ok(None);
    };
    guarded(|| {
        obj.fixup_and_sanitize_btf(features)
            .map(|btf| btf.map(|b| b.to_bytes()))
    })
    .map_err(|p| damaged(what, "fixing up its BTF for the kernel", p))?
    .map_err(|e| Error::Parse {
        what: what.to_owned(),
        reason: format!("bad BTF: {}", tracekit_core::errors::chain(&e)),
    })
}

fn load_object_btf(btf: Option<Vec<u8>>) -> Result<Option<OwnedFd>, String> {
    let Some(btf) = btf else {
        return Ok(None);
    };
    sys::btf_load(&btf).map(Some).map_err(|r| {
        format!(
            "the kernel refused the object's BTF ({}):\n{}",
            r.error,
            last_lines(&r.log, 20)
        )
    })
}

/// A map created for the program, with aya-obj's description of it (for relocations).
struct CreatedMap {
    name: String,
    obj: aya_obj::Map,
    fd: OwnedFd,
}

fn create_maps(obj: &mut Object, btf: Option<&OwnedFd>) -> Result<Vec<CreatedMap>, String> {
    let datasec_ids: HashMap<String, u32> = obj
        .maps
        .iter()
        .filter(|(_, m)| is_global_data(m))
        .filter_map(|(name, _)| {
            let id = obj
                .btf
                .as_ref()?
                .id_by_type_name_kind(name, BtfKind::DataSec)
                .ok()?;
            Some((name.clone(), id))
        })
        .collect();
    let mut maps: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
    // Inner maps are templates created on the spot; plain maps first, by name, for a stable order.
    maps.sort_by_key(|(name, m)| (m.inner().is_some(), name.clone()));
    let mut created = Vec::with_capacity(maps.len());
    for (name, mut map) in maps {
        let btf_ids = btf.map(|fd| {
            let ids = match &map {
                aya_obj::Map::Btf(m) => (m.def.btf_key_type_id, m.def.btf_value_type_id),
                aya_obj::Map::Legacy(_) => (0, datasec_ids.get(&name).copied().unwrap_or(0)),
            };
            (fd.as_fd(), ids)
        });
        fix_sizes(&mut map)?;
        let fd = create_map(&name, &map, btf_ids)?;
        if !map.data().is_empty() {
            sys::map_set_first(fd.as_fd(), map.data())
                .map_err(|e| format!("cannot write the initial contents of map '{name}': {e}"))?;
        }
        if map.section_kind() == EbpfSectionKind::Rodata {
            sys::map_freeze(fd.as_fd()).map_err(|e| format!("cannot freeze map '{name}': {e}"))?;
        }
        created.push(CreatedMap { name, obj: map, fd });
    }
    Ok(created)
}

fn created<'m>(maps: &'m [CreatedMap], name: &str) -> Result<&'m CreatedMap, String> {
    maps.iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("the initial values name map '{name}', which was not created"))
}

fn set_slot(map: &CreatedMap, index: u32, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
    let value = (fd.as_raw_fd() as u32).to_ne_bytes();
    sys::map_update(map.fd.as_fd(), &index.to_ne_bytes(), &value)
        .map_err(|e| format!("cannot set slot {index} of map '{}': {e}", map.name))
}

/// Puts the inner maps a map of maps holds from the start in their slots.
fn fill_map_slots(maps: &[CreatedMap], slots: &[Slot]) -> Result<(), String> {
    for slot in slots {
        if let SlotValue::Map(inner) = &slot.holds {
            set_slot(
                created(maps, &slot.map)?,
                slot.index,
                created(maps, inner)?.fd.as_fd(),
            )?;
        }
    }
    Ok(())
}

/// The rest of the object, for loading the programs a prog array holds.
struct Others<'a> {
    prepared: &'a Prepared,
    obj: &'a Object,
    programs: &'a [ProgramEntry],
    btf: Option<&'a OwnedFd>,
}

/// Loads the programs the prog arrays hold from the start and puts them in their slots;
/// `loaded` is the program already loaded. The arrays keep the programs alive.
fn fill_program_slots(
    maps: &[CreatedMap],
    slots: &[Slot],
    loaded: (&str, std::os::fd::BorrowedFd<'_>),
    others: &Others<'_>,
) -> Result<(), String> {
    let mut fds: HashMap<&str, OwnedFd> = HashMap::new();
    for slot in slots {
        let SlotValue::Program(name) = &slot.holds else {
            continue;
        };
        let map = created(maps, &slot.map)?;
        if name == loaded.0 {
            set_slot(map, slot.index, loaded.1)?;
            continue;
        }
        if !fds.contains_key(name.as_str()) {
            let fd = load_other(name, others).map_err(|reason| {
                format!(
                    "cannot load '{name}', which slot {} of prog array '{}' holds: {reason}",
                    slot.index, slot.map
                )
            })?;
            fds.insert(name, fd);
        }
        set_slot(map, slot.index, fds[name.as_str()].as_fd())?;
    }
    Ok(())
}

fn load_other(name: &str, others: &Others<'_>) -> Result<OwnedFd, String> {
    let entry = others
        .programs
        .iter()
        .find(|p| p.name == name)
        .ok_or("it is not a program of the object")?;
    let ty = SectionType::parse(&entry.section)
        .ok_or_else(|| format!("libbpf does not know its section {}", entry.section))?;
    load_program(others.prepared, others.obj, entry, &ty, others.btf).map_err(|e| e.summary())
}

fn is_global_data(map: &aya_obj::Map) -> bool {
    matches!(
        map.section_kind(),
        EbpfSectionKind::Data | EbpfSectionKind::Rodata | EbpfSectionKind::Bss
    )
}

/// Sizes the kernel insists on, fixed as libbpf fixes them: a perf event array sized 0 (or
/// beyond the CPUs) gets one entry per CPU; a ring buffer's size is rounded up to a
/// power-of-two multiple of the page size.
fn fix_sizes(map: &mut aya_obj::Map) -> Result<(), String> {
    let map_type = map.map_type();
    if map_type == M::BPF_MAP_TYPE_PERF_EVENT_ARRAY as u32 {
        let cpus = aya::util::nr_cpus().map_err(|(path, e)| format!("{path}: {e}"))? as u32;
        if map.max_entries() == 0 || map.max_entries() > cpus {
            map.set_max_entries(cpus);
        }
    }
    let ring = [M::BPF_MAP_TYPE_RINGBUF, M::BPF_MAP_TYPE_USER_RINGBUF];
    if ring.iter().any(|&t| t as u32 == map_type) && map.max_entries() != 0 {
        // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always answered.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
        let size = map
            .max_entries()
            .max(page)
            .div_ceil(page)
            .next_power_of_two()
            * page;
        map.set_max_entries(size);
    }
    Ok(())
}

fn create_map(
    name: &str,
    map: &aya_obj::Map,
    btf: Option<(std::os::fd::BorrowedFd<'_>, (u32, u32))>,
) -> Result<OwnedFd, String> {
    let inner = match map.inner() {
        Some(mut inner) => {
            fix_sizes(&mut inner)?;
            Some(create_map(&format!("{name}.inner"), &inner, None)?)
        }
        None => None,
    };
    let btf = btf
        .filter(|_| takes_btf(map.map_type()))
        .map(|(fd, (key, value))| {
            // Keyless maps take a value type only.
            let key = if map.map_type() == M::BPF_MAP_TYPE_BLOOM_FILTER as u32 {
                0
            } else {
                key
            };
            (fd, key, value)
        })
        .filter(|(_, key, value)| *key != 0 || *value != 0);
    sys::map_create(&MapCreate {
        name,
        map_type: map.map_type(),
        key_size: map.key_size(),
        value_size: match map.value_size() {
            // A prog array declared with initial values and no value size: libbpf's default.
            0 if map.map_type() == M::BPF_MAP_TYPE_PROG_ARRAY as u32 => 4,
            size => size,
        },
        max_entries: map.max_entries(),
        flags: map.map_flags(),
        map_extra: map.map_extra(),
        inner_map: inner.as_ref().map(|fd| fd.as_fd()),
        btf,
    })
    .map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => {
                "; creating BPF maps needs root or CAP_BPF: run tracekit with sudo"
            }
            _ => "",
        };
        format!(
            "cannot create map '{name}' (type {}): {e}{hint}",
            map.map_type()
        )
    })
}

/// Map types whose values the kernel will not describe with BTF (it refuses the ids).
fn takes_btf(map_type: u32) -> bool {
    const NO_BTF: &[M] = &[
        M::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        M::BPF_MAP_TYPE_CGROUP_ARRAY,
        M::BPF_MAP_TYPE_STACK_TRACE,
        M::BPF_MAP_TYPE_ARRAY_OF_MAPS,
        M::BPF_MAP_TYPE_HASH_OF_MAPS,
        M::BPF_MAP_TYPE_DEVMAP,
        M::BPF_MAP_TYPE_DEVMAP_HASH,
        M::BPF_MAP_TYPE_CPUMAP,
        M::BPF_MAP_TYPE_XSKMAP,
        M::BPF_MAP_TYPE_SOCKMAP,
        M::BPF_MAP_TYPE_SOCKHASH,
        M::BPF_MAP_TYPE_QUEUE,
        M::BPF_MAP_TYPE_STACK,
        M::BPF_MAP_TYPE_RINGBUF,
    ];
    !NO_BTF.iter().any(|&t| t as u32 == map_type)
}

fn load_program(
    prepared: &Prepared,
    obj: &Object,
    entry: &ProgramEntry,
    ty: &SectionType,
    btf: Option<&OwnedFd>,
) -> Result<OwnedFd, Error> {
    let fail = |reason: String| Error::Load {
        name: entry.name.clone(),
        reason,
    };
    let program = obj
        .programs
        .get(&entry.name)
        .ok_or_else(|| fail(format!("aya-obj found no program '{}'", entry.name)))?;
    let function = &obj.functions[&program.function_key()];
    let (attach_btf_id, expected_attach_type) = if ty.prog_type == STRUCT_OPS {
        let implements = prepared.struct_ops.get(&entry.name).ok_or_else(|| {
            fail("it is in no struct_ops variable of the object, so the kernel struct it implements is unknown".into())
        })?;
        crate::struct_ops::kernel_ids(implements).map_err(fail)?
    } else {
        let id = match &ty.attach_btf_target {
            Some(target) => attach_btf_id(kernel_btf().map_err(fail)?, ty, target).map_err(fail)?,
            None => 0,
        };
        (id, ty.attach_type)
    };
    let license = CString::new(program.license.as_bytes()).unwrap_or_default();
    sys::prog_load(&ProgLoad {
        name: &entry.name,
        prog_type: ty.prog_type,
        expected_attach_type,
        attach_btf_id,
        flags: ty.load_flags(),
        insns: as_bytes(&function.instructions),
        license: &license,
        btf: btf.map(|fd| fd.as_fd()),
        func_info: as_bytes(&function.func_info.func_info),
        line_info: as_bytes(&function.line_info.line_info),
    })
    .map_err(|refusal| {
        // The kernel says EPERM before the verifier runs when the caller lacks the capability.
        if refusal.error.raw_os_error() == Some(libc::EPERM) && refusal.log.trim().is_empty() {
            return Error::NotPermitted {
                name: entry.name.clone(),
            };
        }
        let mut verdict = verdict(&refusal.log).to_owned();
        if verdict.contains(&format!("unknown#{POISON}")) {
            verdict.push_str(&poisoned_core_relocations(
                &prepared.bytes,
                program,
                function,
                entry,
            ));
        }
        Error::Refused {
            name: entry.name.clone(),
            errno: tracekit_core::errno::name(refusal.error.raw_os_error().unwrap_or(0)),
            verdict,
            log: refusal.log,
        }
    })
}

/// The helper id aya-obj (like libbpf) calls in place of a CO-RE relocation it cannot apply.
const POISON: i32 = 0xbad2310;

/// Which CO-RE relocations were left poisoned in the program, by type and field, as libbpf
/// reports them: ` (CO-RE relocation that could not be applied: field_exists of struct s.f at
/// instruction 12; ...)`.
fn poisoned_core_relocations(
    elf: &[u8],
    program: &aya_obj::Program,
    function: &aya_obj::Function,
    entry: &ProgramEntry,
) -> String {
    use object::{Object as _, ObjectSection as _};
    let section = object::File::parse(elf)
        .ok()
        .and_then(|f| {
            let s = f
                .section_by_index(object::SectionIndex(program.section_index))
                .ok()?;
            s.name().ok().map(str::to_owned)
        })
        .unwrap_or_default();
    // Grouped by what they reach, in order: (path, kinds, instructions).
    let mut found: Vec<(String, Vec<&str>, Vec<usize>)> = Vec::new();
    for (i, _) in function
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, insn)| insn.code == 0x85 && insn.imm == POISON)
    {
        let (path, kind) = (i < entry.insns as usize)
            .then(|| crate::core_relo::describe(elf, &section, function.section_offset + 8 * i))
            .flatten()
            .unwrap_or_else(|| ("a subprogram's relocation".to_owned(), "?"));
        match found.iter_mut().find(|(p, _, _)| *p == path) {
            Some((_, kinds, insns)) => {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
                insns.push(i);
            }
            None => found.push((path, vec![kind], vec![i])),
        }
    }
    if found.is_empty() {
        return String::new();
    }
    let each: Vec<String> = found
        .iter()
        .map(|(path, kinds, insns)| {
            format!(
                "{path} ({}; {} instruction{}, the first {})",
                kinds.join(", "),
                insns.len(),
                if insns.len() == 1 { "" } else { "s" },
                insns[0]
            )
        })
        .collect();
    format!(
        "; CO-RE relocations aya-obj could not apply were left as that call: {}",
        each.join("; ")
    )
}

/// The kernel BTF id of what a `tp_btf/`, `fentry/`, `lsm/`, `iter/` ... program attaches to.
const STRUCT_OPS: u32 = aya_obj::generated::bpf_prog_type::BPF_PROG_TYPE_STRUCT_OPS as u32;

fn attach_btf_id(kernel: &Btf, ty: &SectionType, target: &str) -> Result<u32, String> {
    use aya_obj::generated::bpf_attach_type as A;
    let (name, kind) = match ty.attach_type {
        a if a == A::BPF_TRACE_RAW_TP as u32 => (format!("btf_trace_{target}"), BtfKind::Typedef),
        a if a == A::BPF_LSM_MAC as u32 || a == A::BPF_LSM_CGROUP as u32 => {
            (format!("bpf_lsm_{target}"), BtfKind::Func)
        }
        a if a == A::BPF_TRACE_ITER as u32 => (format!("bpf_iter_{target}"), BtfKind::Func),
        _ => (target.to_owned(), BtfKind::Func),
    };
    kernel
        .id_by_type_name_kind(&name, kind)
        .map_err(|_| format!("the kernel's BTF has no {kind:?} named '{name}' to attach to"))
}

/// The bytes of a slice of plain C records (instructions, func and line info).
fn as_bytes<T: Copy>(records: &[T]) -> &[u8] {
    // SAFETY: T is one of aya-obj's bindgen structs of the kernel's ABI (bpf_insn,
    // bpf_func_info, bpf_line_info): repr(C), integer fields, no padding; any initialised
    // value is valid bytes, and the length is exactly the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(records.as_ptr().cast::<u8>(), size_of_val(records)) }
}

/// A map as a program holds it: aya's typed handle, so that callers use aya's `Array`,
/// `HashMap`, ... on it, and a duplicate of its fd with its sizes for byte-level access.
pub(crate) fn opened_map(data: MapData) -> Result<LoadedMap, String> {
    let info = data.info().map_err(|e| tracekit_core::errors::chain(&e))?;
    let raw = RawMap {
        fd: data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?,
        map_type: info.map_type().map_or(0, |t| t as u32),
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
    };
    Ok(LoadedMap {
        typed: typed_map(data, info.map_type()),
        raw,
    })
}

fn typed_map(data: MapData, map_type: Result<aya::maps::MapType, aya::maps::MapError>) -> Map {
    use aya::maps::MapType as T;
    match map_type {
        Ok(T::Array) => Map::Array(data),
        Ok(T::PerCpuArray) => Map::PerCpuArray(data),
        Ok(T::ProgramArray) => Map::ProgramArray(data),
        Ok(T::Hash) => Map::HashMap(data),
        Ok(T::LruHash) => Map::LruHashMap(data),
        Ok(T::PerCpuHash) => Map::PerCpuHashMap(data),
        Ok(T::LruPerCpuHash) => Map::PerCpuLruHashMap(data),
        Ok(T::PerfEventArray) => Map::PerfEventArray(data),
        Ok(T::RingBuf) => Map::RingBuf(data),
        Ok(T::LpmTrie) => Map::LpmTrie(data),
        Ok(T::Queue) => Map::Queue(data),
        Ok(T::Stack) => Map::Stack(data),
        Ok(T::StackTrace) => Map::StackTraceMap(data),
        Ok(T::BloomFilter) => Map::BloomFilter(data),
        Ok(T::SockMap) => Map::SockMap(data),
        Ok(T::SockHash) => Map::SockHash(data),
        Ok(T::DevMap) => Map::DevMap(data),
        Ok(T::DevMapHash) => Map::DevMapHash(data),
        Ok(T::CpuMap) => Map::CpuMap(data),
        Ok(T::XskMap) => Map::XskMap(data),
        Ok(T::ArrayOfMaps) => Map::ArrayOfMaps(data),
        Ok(T::HashOfMaps) => Map::HashOfMaps(data),
        _ => Map::Unsupported(data),
    }
}

/// The verifier's reason for a refusal: the last line of its log that is not a statistic.
fn verdict(log: &str) -> &str {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .unwrap_or("the verifier gave no log")
}

/// The last `n` lines of a verifier log, with a note of how many were left out.
pub(crate) fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if lines.len() <= n {
        return log.to_owned();
    }
    format!(
        "... ({} earlier lines; --verbose prints the whole log)\n{}",
        lines.len() - n,
        lines[lines.len() - n..].join("\n")
    )
}
