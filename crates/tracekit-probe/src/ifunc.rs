//! IFUNC symbols: `strlen`, `memcpy` and friends in glibc are `STT_GNU_IFUNC`, whose address is
//! a resolver that the dynamic loader calls once to pick an implementation for this CPU
//! (`__strlen_avx2`, `__strlen_evex`, ...). A probe on the symbol's address would count the
//! resolver's single call, not the program's calls (bpftrace#3626).
//!
//! The loader's choice depends on the CPU and on `GLIBC_TUNABLES`, both shared by tracekit and
//! a program it starts or attaches to on the same machine. So tracekit asks its own dynamic
//! loader: for a library already loaded into tracekit (glibc always is), `dlsym` returns the
//! implementation the resolver selected, and the library's load bias turns that into the
//! file's virtual address. A library tracekit has not loaded is not loaded for this (its
//! constructors would run inside tracekit); such an IFUNC is refused with the reason.

use std::ffi::{CString, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The start of glibc's `struct link_map` (<link.h>): the load bias comes first.
#[repr(C)]
struct LinkMapHead {
    l_addr: usize,
}

/// The file virtual address of the implementation the IFUNC `name` of library `binary`
/// resolves to on this machine; `None` when the library is not loaded in this process or has
/// no such symbol.
pub(crate) fn implementation(binary: &Path, name: &str) -> Option<u64> {
    let path = CString::new(binary.as_os_str().as_bytes()).ok()?;
    // `memcpy@@GLIBC_2.14`: the version picks the definition (and finds hidden ones).
    let (base, version) = match name.split_once('@') {
        Some((base, version)) => (base, Some(version.trim_start_matches('@'))),
        None => (name, None),
    };
    let symbol = CString::new(base).ok()?;
    let version = version.map(CString::new).transpose().ok()?;
    // SAFETY: both strings are NUL-terminated; RTLD_NOLOAD only looks the library up among
    // those already loaded (matching by file identity), so no code of it runs here.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return None;
    }
    let found = resolved(handle, &symbol, version.as_ref());
    // SAFETY: `handle` came from dlopen above; closing drops the reference NOLOAD added.
    unsafe { libc::dlclose(handle) };
    found
}

/// The symbol's resolved address in this process, as a file virtual address.
fn resolved(handle: *mut c_void, symbol: &CString, version: Option<&CString>) -> Option<u64> {
    // SAFETY: `handle` is a live dlopen handle, `symbol` and `version` NUL-terminated; for an
    // IFUNC, dlsym/dlvsym run the resolver (already run at load for libc's own references)
    // and return its choice.
    let address = unsafe {
        match version {
            Some(v) => libc::dlvsym(handle, symbol.as_ptr(), v.as_ptr()),
            None => libc::dlsym(handle, symbol.as_ptr()),
        }
    };
    if address.is_null() {
        return None;
    }
    let mut map: *mut LinkMapHead = std::ptr::null_mut();
    // SAFETY: RTLD_DI_LINKMAP writes one `struct link_map *` to the pointer given, which
    // points to a pointer-sized local.
    let rc = unsafe {
        libc::dlinfo(
            handle,
            libc::RTLD_DI_LINKMAP,
            (&mut map as *mut *mut LinkMapHead).cast(),
        )
    };
    if rc != 0 || map.is_null() {
        return None;
    }
    // SAFETY: the loader's link_map for a loaded object stays valid while the handle is open;
    // its first field is the load bias (<link.h>).
    let bias = unsafe { (*map).l_addr };
    (address as usize)
        .checked_sub(bias)
        .map(|vaddr| vaddr as u64)
}
