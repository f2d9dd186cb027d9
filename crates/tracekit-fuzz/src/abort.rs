//! Keeps the input that aborts the process. A parser that asks for an absurd allocation (a
//! length read from the input) does not panic: the allocator aborts, and `catch_unwind` cannot
//! help. So while an input runs, a SIGABRT handler knows where it is and writes it to a file
//! opened in advance, with async-signal-safe calls only.

use std::ffi::CString;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

static INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LEN: AtomicUsize = AtomicUsize::new(0);
static FD: AtomicI32 = AtomicI32::new(-1);
static MESSAGE: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Armed for one target: the file an aborting input is written to, and the handler.
pub struct Guard {
    path: PathBuf,
}

impl Guard {
    /// Opens `DIR/TARGET/aborted.bin` and installs the handler.
    pub fn arm(dir: &Path, target: &str) -> Option<Guard> {
        let dir = dir.join(target);
        let path = dir.join("aborted.bin");
        std::fs::create_dir_all(&dir).ok()?;
        let file = std::fs::File::create(&path).ok()?;
        FD.store(file.into_raw_fd(), Ordering::SeqCst);
        let message = format!(
            "\ntracekit-fuzz: {target}: the input that aborted the process is saved as {}\n",
            path.display()
        );
        let message = CString::new(message).ok()?.into_raw();
        let old = MESSAGE.swap(message, Ordering::SeqCst);
        if !old.is_null() {
            // SAFETY: `old` came from CString::into_raw in an earlier arm and is not used
            // any more: the handler only reads MESSAGE, which now holds the new one.
            drop(unsafe { CString::from_raw(old) });
        }
        // SAFETY: `on_abort` is an extern "C" fn(c_int) that makes only async-signal-safe
        // calls (write, close); installing it has no other precondition.
        unsafe { libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t) };
        Some(Guard { path })
    }

    /// Points the handler at the input about to run (it must live until [`Guard::clear`]).
    pub fn set(&self, input: &[u8]) {
        LEN.store(input.len(), Ordering::SeqCst);
        INPUT.store(input.as_ptr().cast_mut(), Ordering::SeqCst);
    }

    /// The input is done.
    pub fn clear(&self) {
        INPUT.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

impl Drop for Guard {
    /// Puts back the default action and removes the (empty) file.
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition has no preconditions.
        unsafe { libc::signal(libc::SIGABRT, libc::SIG_DFL) };
        let fd = FD.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `fd` was opened by `arm` and handed to nothing else.
            unsafe { libc::close(fd) };
        }
        let _ = std::fs::remove_file(&self.path);
        let _ = self.path.parent().map(std::fs::remove_dir);
    }
}

extern "C" fn on_abort(_: libc::c_int) {
    let (input, len, fd) = (
        INPUT.load(Ordering::SeqCst),
        LEN.load(Ordering::SeqCst),
        FD.load(Ordering::SeqCst),
    );
    if input.is_null() || fd < 0 {
        return;
    }
    // SAFETY: `input`/`len` describe the slice `set` was given, alive until `clear` (the
    // abort happens while it runs); write and close are async-signal-safe.
    unsafe {
        libc::write(fd, input.cast(), len);
        libc::close(fd);
        let message = MESSAGE.load(Ordering::SeqCst);
        if !message.is_null() {
            libc::write(2, message.cast(), libc::strlen(message));
        }
    }
}
