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
//! helper process forked for it, so its constructors run there and not in tracekit. The helper
//! keeps nothing of tracekit's but the pipe for its answer (every other descriptor closed), runs
//! the library's code as the file's owner (nobody for a file of another mount namespace), not
//! as root, and is killed with its whole process group once it has answered or after 5 s.

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
    let (reader, writer) = io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    // SAFETY: the child only drops its privileges, loads the library, looks the symbol up,
    // writes the answer and leaves with _exit (no destructors, no flushing of tracekit's
    // buffers). glibc's fork resets the loader's and malloc's locks in the child, so dlopen
    // works there even when another thread held them; a constructor that hangs is killed at
    // the timeout.
    match unsafe { libc::fork() } {
        -1 => Err(format!(
            "cannot fork a helper process: {}",
            io::Error::last_os_error()
        )),
        0 => {
            drop(reader);
            helper(path, symbol, version, writer.into())
        }
        pid => {
            drop(writer);
            // Its own process group (set here too, so that it exists before the kill below
            // whoever runs first), so that anything a constructor forked goes with it.
            // SAFETY: setpgid on our own child only.
            unsafe { libc::setpgid(pid, pid) };
            let answer = read_answer(reader, pid);
            // SAFETY: `pid` is our child and leads its group; killing exited processes is
            // harmless, and waitpid reaps the child so no zombie is left.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            answer
        }
    }
}

/// The helper process: runs the library's code as someone who could have written it, sends
/// `0` and the vaddr, or `1`, a 4-byte length and the reason, then exits.
fn helper(path: &CString, symbol: &CString, version: Option<&CString>, answer: OwnedFd) -> ! {
    let answer = isolate(answer);
    let result = match drop_privileges(path) {
        Err(why) => Err(why),
        Ok(()) => load_and_resolve(path, symbol, version),
    };
    let message = match result {
        Ok(vaddr) => [&[0u8][..], &vaddr.to_le_bytes()].concat(),
        Err(why) => {
            let len = (why.len() as u32).to_le_bytes();
            [&[1u8][..], &len, why.as_bytes()].concat()
        }
    };
    let _ = std::fs::File::from(answer).write_all(&message);
    // SAFETY: _exit ends the helper at once, as a forked child of a threaded process must.
    unsafe { libc::_exit(0) }
}

fn load_and_resolve(
    path: &CString,
    symbol: &CString,
    version: Option<&CString>,
) -> Result<u64, String> {
    // SAFETY: `path` is NUL-terminated; this process exists to run the library's code.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("loading it failed: {}", dl_error()));
    }
    resolved(handle, symbol, version).ok_or_else(|| "the loader does not find it".into())
}

/// Leaves the helper nothing of tracekit's but the answer pipe (as descriptor 3): standard
/// streams on /dev/null (a constructor's output must not mix with tracekit's), every other
/// descriptor (BPF objects, sockets, the terminal) closed, and death with tracekit.
fn isolate(answer: OwnedFd) -> OwnedFd {
    const ANSWER_FD: i32 = 3;
    // SAFETY: these calls change only this (helper) process: its group, its parent-death
    // signal and its descriptor table; the descriptors named are valid or ignored.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if answer.as_raw_fd() != ANSWER_FD {
            libc::dup2(answer.as_raw_fd(), ANSWER_FD);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        libc::syscall(libc::SYS_close_range, ANSWER_FD + 1, u32::MAX, 0);
    }
    std::mem::forget(answer);
    // SAFETY: descriptor 3 is the answer pipe's write end, and nothing else owns it now.
    unsafe { OwnedFd::from_raw_fd(ANSWER_FD) }
}

/// The identity the helper runs the library's code as: the file's owner when that is not root
/// (a user's library must not run as root just because root probes it), nobody for a file of
/// another mount namespace (a container's, reached through /proc/PID/root), else root.
fn drop_privileges(path: &CString) -> Result<(), String> {
    let text = path.to_string_lossy();
    let (uid, gid) = if text.starts_with("/proc/") {
        (65534, 65534)
    } else {
        let meta = std::fs::metadata(&*text).map_err(|e| format!("cannot read it: {e}"))?;
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta),
        )
    };
    // SAFETY: getuid only reads this process's identity.
    if uid == 0 || unsafe { libc::getuid() } == uid {
        return Ok(());
    }
    // SAFETY: setgroups, setgid and setuid change only this helper's identity (it has one
    // thread); the empty group list is a null pointer with length 0.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(gid) == 0
            && libc::setuid(uid) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cannot run its code as uid {uid} (who could have written it): {}",
            io::Error::last_os_error()
        ))
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

/// Reads the helper's answer until it is complete (a constructor that forked may keep the pipe
/// open), the helper closes the pipe, or the timeout passes.
fn read_answer(mut reader: io::PipeReader, pid: libc::pid_t) -> Result<u64, String> {
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let mut message = Vec::new();
    loop {
        if let Some(answer) = parse_answer(&message) {
            return answer;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: reader.as_raw_fd(),
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
        match reader.read(&mut chunk) {
            Ok(0) => {
                return Err("the helper process loading it ended without an answer".into());
            }
            Ok(n) => message.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the helper process's answer: {e}")),
        }
    }
}

/// The answer in `message` once it is complete: `0` and 8 bytes of vaddr, or `1`, a 4-byte
/// length and the reason.
fn parse_answer(message: &[u8]) -> Option<Result<u64, String>> {
    match message.split_first()? {
        (0, rest) => {
            let vaddr: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            Some(Ok(u64::from_le_bytes(vaddr)))
        }
        (1, rest) => {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let why = rest.get(4..4 + len)?;
            Some(Err(String::from_utf8_lossy(why).into_owned()))
        }
        _ => Some(Err("the helper process's answer was garbled".into())),
    }
}

/// A warning when process `pid` started with other `GLIBC_TUNABLES` than tracekit: its loader
/// may have picked other implementations (`glibc.cpu.hwcaps=-AVX2` and the like) than the one
/// tracekit's helper reports. The variable counts as the process saw it at its start, which
/// is when its loader read it.
pub(crate) fn tunables_differ(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    // The loader reads every definition; the last one wins.
    let theirs = environ
        .split(|&b| b == 0)
        .filter_map(|v| v.strip_prefix(b"GLIBC_TUNABLES="))
        .next_back()
        .map(<[u8]>::to_vec);
    let ours = std::env::var_os("GLIBC_TUNABLES").map(|v| v.as_bytes().to_vec());
    if theirs == ours {
        return None;
    }
    let show = |v: &Option<Vec<u8>>| {
        v.as_deref().map_or_else(
            || "unset".into(),
            |v| String::from_utf8_lossy(v).into_owned(),
        )
    };
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
            let child = c.spawn().unwrap();
            // spawn returns once the child has let go of our memory, inside its execve: its
            // environment is readable only when the exec is done.
            let environ = format!("/proc/{}/environ", child.id());
            while std::fs::read(&environ).is_ok_and(|e| e.is_empty()) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            child
        };
        // A value tracekit's own environment cannot have: ours with more appended.
        let different = format!("{}:glibc.cpu.hwcaps=-AVX2", ours.as_deref().unwrap_or(""));
        let mut other = start(Some(&different));
        let mut same = start(ours.as_deref());
        let warning = tunables_differ(other.id());
        let none = tunables_differ(same.id());
        for child in [&mut other, &mut same] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let warning = warning.unwrap();
        assert!(
            warning.contains(&format!("GLIBC_TUNABLES={different} and")),
            "{warning}"
        );
        assert_eq!(none, None);
    }

    #[test]
    fn what_cannot_be_resolved_says_why() {
        let missing = implementation(Path::new("/nonexistent/libx.so"), "f").unwrap_err();
        assert!(missing.starts_with("cannot read it"), "{missing}");
        let not_elf = implementation(Path::new("/etc/passwd"), "f").unwrap_err();
        assert!(not_elf.starts_with("loading it failed"), "{not_elf}");
        let lib = Path::new("/lib/x86_64-linux-gnu/libatomic.so.1");
        let unknown = implementation(lib, "no_such_function").unwrap_err();
        assert_eq!(unknown, "the loader does not find it");
    }
}
