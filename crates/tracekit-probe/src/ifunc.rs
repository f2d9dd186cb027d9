//! IFUNC symbols: `strlen`, `memcpy` and friends in glibc are `STT_GNU_IFUNC`, whose address is
//! a resolver that the dynamic loader calls once to pick an implementation for this CPU
//! (`__strlen_avx2`, `__strlen_evex`, ...). A probe on the symbol's address would count the
//! resolver's single call, not the program's calls (bpftrace#3626).
//!
//! The loader's choice depends on the CPU and on `GLIBC_TUNABLES`, both shared by tracekit and
//! a program it starts on the same machine. So tracekit asks a dynamic loader: for a library
//! already loaded into tracekit (glibc always is), its own `dlsym` returns the implementation
//! the resolver selected, and the library's load bias turns that into the file's virtual
//! address. Any other library (libatomic, libmvec, a program's own) is loaded in a short-lived
//! helper process forked for it, never in tracekit itself: its constructors run there, and a
//! library that fails to load or hangs costs only the helper.

use std::ffi::{CString, c_void};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The start of glibc's `struct link_map` (<link.h>): the load bias comes first.
#[repr(C)]
struct LinkMapHead {
    l_addr: usize,
}

/// How long the helper process may take to load a library and run its resolver.
const HELPER_TIMEOUT: Duration = Duration::from_secs(5);

/// The file virtual address of the implementation the IFUNC `name` of library `binary`
/// resolves to on this machine, or why it could not be learnt.
pub(crate) fn implementation(binary: &Path, name: &str) -> Result<u64, String> {
    let path = CString::new(binary.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // `memcpy@@GLIBC_2.14`: the version picks the definition (and finds hidden ones).
    let (base, version) = match name.split_once('@') {
        Some((base, version)) => (base, Some(version.trim_start_matches('@'))),
        None => (name, None),
    };
    let symbol = CString::new(base).map_err(|e| e.to_string())?;
    let version = version
        .map(CString::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    if let Some(vaddr) = in_this_process(&path, &symbol, version.as_ref()) {
        return Ok(vaddr);
    }
    in_helper(&path, &symbol, version.as_ref())
}

/// The answer of this process's loader, when the library is already loaded here.
fn in_this_process(path: &CString, symbol: &CString, version: Option<&CString>) -> Option<u64> {
    // SAFETY: both strings are NUL-terminated; RTLD_NOLOAD only looks the library up among
    // those already loaded (matching by file identity), so no code of it runs here.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return None;
    }
    let found = resolved(handle, symbol, version);
    // SAFETY: `handle` came from dlopen above; closing drops the reference NOLOAD added.
    unsafe { libc::dlclose(handle) };
    found
}

/// Loads the library in a forked helper process and returns its loader's answer.
fn in_helper(path: &CString, symbol: &CString, version: Option<&CString>) -> Result<u64, String> {
    let (reader, writer) = pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    // SAFETY: the child only loads the library, looks the symbol up, writes the answer and
    // leaves with _exit (no destructors, no flushing of tracekit's buffers). glibc's fork
    // resets the loader's and malloc's locks in the child, so dlopen works there even when
    // another thread held them; a library whose constructor hangs is killed at the timeout.
    match unsafe { libc::fork() } {
        -1 => Err(format!(
            "cannot fork a helper process: {}",
            io::Error::last_os_error()
        )),
        0 => {
            drop(reader);
            helper(path, symbol, version, writer)
        }
        pid => {
            drop(writer);
            let answer = read_answer(reader, pid);
            // SAFETY: `pid` is our child; killing an exited child is harmless, and waitpid
            // reaps it so no zombie is left.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            answer
        }
    }
}

/// The helper process: loads the library, sends `0` and the vaddr or `1` and the reason, exits.
fn helper(path: &CString, symbol: &CString, version: Option<&CString>, answer: OwnedFd) -> ! {
    quiet();
    // SAFETY: `path` is NUL-terminated; this process exists to run the library's code.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    let message = if handle.is_null() {
        let mut m = vec![1];
        m.extend_from_slice(format!("loading it failed: {}", dl_error()).as_bytes());
        m
    } else {
        match resolved(handle, symbol, version) {
            Some(vaddr) => [&[0u8][..], &vaddr.to_le_bytes()].concat(),
            None => b"\x01the loader does not find it".to_vec(),
        }
    };
    let _ = std::fs::File::from(answer).write_all(&message);
    // SAFETY: _exit ends the helper at once, as a forked child of a threaded process must.
    unsafe { libc::_exit(0) }
}

/// Points the helper's standard streams at /dev/null: a constructor's output must not mix with
/// tracekit's.
fn quiet() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this (helper) process only.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// The loader's last error message.
fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "unknown error".into();
    }
    // SAFETY: non-null and NUL-terminated, as above.
    unsafe { std::ffi::CStr::from_ptr(e) }
        .to_string_lossy()
        .into_owned()
}

/// Reads the helper's answer until it closes the pipe or the timeout passes.
fn read_answer(reader: OwnedFd, pid: libc::pid_t) -> Result<u64, String> {
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let mut file = std::fs::File::from(reader);
    let mut message = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
        if ready < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if ready <= 0 {
            return Err(format!(
                "the helper process loading it (pid {pid}) did not answer in {} s",
                HELPER_TIMEOUT.as_secs()
            ));
        }
        let mut chunk = [0u8; 512];
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => message.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the helper process's answer: {e}")),
        }
    }
    match message.split_first() {
        Some((0, vaddr)) if vaddr.len() == 8 => {
            Ok(u64::from_le_bytes(vaddr.try_into().unwrap_or_default()))
        }
        Some((1, why)) => Err(String::from_utf8_lossy(why).into_owned()),
        _ => Err("the helper process loading it ended without an answer".into()),
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A warning when process `pid` started with other `GLIBC_TUNABLES` than tracekit: its loader
/// may have picked other implementations (`glibc.cpu.hwcaps=-AVX2` and the like) than the one
/// tracekit's helper reports. The variable counts as the process saw it at its start, which
/// is when its loader read it.
pub(crate) fn tunables_differ(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let theirs = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"GLIBC_TUNABLES="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let ours = std::env::var("GLIBC_TUNABLES").ok();
    if theirs == ours {
        return None;
    }
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
    Some(format!(
        "process {pid} started with GLIBC_TUNABLES={} and tracekit with {}: its dynamic loader \
         may have picked other IFUNC implementations than those probed; run tracekit with the \
         same GLIBC_TUNABLES",
        show(&theirs),
        show(&ours)
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSymbol};

    /// libatomic is not loaded in the test process, so its resolver runs in a helper; the
    /// answer is the same each time and is not the resolver itself.
    #[test]
    fn a_library_not_loaded_here_is_resolved_in_a_helper() {
        let lib = Path::new("/lib/x86_64-linux-gnu/libatomic.so.1");
        let first = implementation(lib, "__atomic_load_16").unwrap();
        assert_eq!(
            implementation(lib, "__atomic_load_16@@LIBATOMIC_1.0"),
            Ok(first)
        );
        let data = std::fs::read(lib).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let resolver = file
            .dynamic_symbols()
            .find(|s| s.name() == Ok("__atomic_load_16"))
            .map(|s| s.address())
            .unwrap();
        assert_ne!(first, resolver);
    }

    /// A process started with other GLIBC_TUNABLES than ours is named, one with ours is not.
    #[test]
    fn other_tunables_of_an_attached_process_are_warned_about() {
        let ours = std::env::var("GLIBC_TUNABLES").ok();
        let start = |tunables: Option<&str>| {
            let mut c = std::process::Command::new("sleep");
            c.arg("10");
            match tunables {
                Some(t) => c.env("GLIBC_TUNABLES", t),
                None => c.env_remove("GLIBC_TUNABLES"),
            };
            c.spawn().unwrap()
        };
        let mut other = start(Some("glibc.cpu.hwcaps=-AVX2"));
        let mut same = start(ours.as_deref());
        let warning = tunables_differ(other.id());
        let none = tunables_differ(same.id());
        for child in [&mut other, &mut same] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let warning = warning.unwrap();
        assert!(
            warning.contains("GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2"),
            "{warning}"
        );
        assert_eq!(none, None);
    }

    #[test]
    fn what_cannot_be_resolved_says_why() {
        let missing = implementation(Path::new("/nonexistent/libx.so"), "f").unwrap_err();
        assert!(missing.starts_with("loading it failed"), "{missing}");
        let lib = Path::new("/lib/x86_64-linux-gnu/libatomic.so.1");
        let unknown = implementation(lib, "no_such_function").unwrap_err();
        assert_eq!(unknown, "the loader does not find it");
    }
}
