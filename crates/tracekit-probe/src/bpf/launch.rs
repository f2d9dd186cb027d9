//! Starting a command so that probes can be attached before it runs its first instruction.
//!
//! The child is forked by [`std::process::Command`] (so PATH lookup, environment and exec
//! errors behave as usual) and, between fork and exec, reports its pid on one pipe and waits
//! for a byte on another. The parent attaches its probes to that pid, then opens the gate.
//! `Command::spawn` only returns once the child has exec'd, so it runs on a helper thread.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::io::{PipeWriter, pipe};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::JoinHandle;

/// A forked child held before `exec` until [`GatedChild::release`].
#[derive(Debug)]
pub struct GatedChild {
    pid: u32,
    gate: Option<PipeWriter>,
    spawner: Option<JoinHandle<io::Result<Child>>>,
}

/// Finds `program` like `execvp` would, so a missing program is reported before anything is
/// attached.
pub fn find_program(program: &Path) -> io::Result<PathBuf> {
    tracekit_core::process::find_program(program)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))
}

/// `execve`'s arguments, built before the fork (the child must not allocate).
struct Exec {
    program: std::ffi::CString,
    _args: Vec<std::ffi::CString>,
    argv: Vec<*const libc::c_char>,
}

// SAFETY: the pointers in `argv` point into the CStrings `Exec` owns, which move with it.
unsafe impl Send for Exec {}
// SAFETY: `Exec` is only read (by `run`), never mutated after construction.
unsafe impl Sync for Exec {}

impl Exec {
    fn new(program: &Path, args: &[OsString]) -> io::Result<Exec> {
        use std::os::unix::ffi::OsStrExt;
        let c = |s: &std::ffi::OsStr| {
            std::ffi::CString::new(s.as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "argument holds a NUL byte")
            })
        };
        let program = c(program.as_os_str())?;
        let mut all = vec![program.clone()];
        for a in args {
            all.push(c(a)?);
        }
        let mut argv: Vec<*const libc::c_char> = all.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(Exec {
            program,
            _args: all,
            argv,
        })
    }

    /// Replaces the process image; returns only the error.
    fn run(&self) -> io::Error {
        unsafe extern "C" {
            static environ: *const *const libc::c_char;
        }
        // SAFETY: program and argv are NUL-terminated and live in `self`; `environ` is the
        // process environment, which the forked child inherited unchanged.
        unsafe { libc::execve(self.program.as_ptr(), self.argv.as_ptr(), environ) };
        io::Error::last_os_error()
    }
}

impl GatedChild {
    /// Forks `program args...` and leaves it waiting before `exec`.
    pub fn spawn(program: &Path, args: &[OsString]) -> io::Result<GatedChild> {
        let program = find_program(program)?;
        let (mut pid_r, pid_w) = pipe()?;
        let (gate_r, gate_w) = pipe()?;
        let (pid_w_fd, gate_r_fd, gate_w_fd) =
            (pid_w.as_raw_fd(), gate_r.as_raw_fd(), gate_w.as_raw_fd());
        let mut cmd = Command::new(&program);
        cmd.args(args);
        let exec = Exec::new(&program, args)?;
        // SAFETY: the closure runs in the forked child and only calls async-signal-safe
        // functions (close, getpid, write, read, execve) on descriptors the parent keeps open
        // until the spawn returns (they are moved into the spawner thread below) and on the
        // argument vectors `exec` owns, built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(gate_w_fd);
                let pid = libc::getpid().to_ne_bytes();
                if libc::write(pid_w_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                    return Err(io::Error::last_os_error());
                }
                let mut byte = 0u8;
                match libc::read(gate_r_fd, (&raw mut byte).cast(), 1) {
                    // The probes are attached now: exec at once, with no library call in
                    // between that a probe could be on (std's execvp calls strchr).
                    1 if byte == b'g' => Err(exec.run()),
                    _ => Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "tracekit did not release the command",
                    )),
                }
            });
        }
        let spawner = std::thread::spawn(move || {
            let result = cmd.spawn();
            drop((pid_w, gate_r));
            result
        });
        let mut pid = [0u8; 4];
        if let Err(e) = pid_r.read_exact(&mut pid) {
            // The fork itself failed: the spawner has the real error.
            return Err(match spawner.join() {
                Ok(Err(err)) => err,
                _ => e,
            });
        }
        Ok(GatedChild {
            pid: i32::from_ne_bytes(pid) as u32,
            gate: Some(gate_w),
            spawner: Some(spawner),
        })
    }

    /// The child's pid (valid before and after exec).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child exec and returns its handle once it has.
    pub fn release(mut self) -> io::Result<Child> {
        let mut gate = self.gate.take().expect("gate is open until release");
        gate.write_all(b"g")?;
        drop(gate);
        self.spawner
            .take()
            .expect("spawner until release")
            .join()
            .map_err(|_| io::Error::other("spawner thread panicked"))?
    }
}

impl Drop for GatedChild {
    /// Not released: closing the gate makes the child's pre-exec step fail, so it never runs
    /// the command; the spawner then reaps it.
    fn drop(&mut self) {
        drop(self.gate.take());
        if let Some(s) = self.spawner.take() {
            let _ = s.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_waits_at_the_gate_then_runs() {
        let child = GatedChild::spawn(Path::new("sh"), &["-c".into(), "exit 7".into()]).unwrap();
        let pid = child.pid();
        // Still tracekit's image: it has not exec'd.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        let status = child.release().unwrap().wait().unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[test]
    fn dropped_gate_never_runs_the_command() {
        let marker = std::env::temp_dir().join(format!("tk-gate-{}", std::process::id()));
        let child = GatedChild::spawn(Path::new("touch"), &[marker.clone().into()]).unwrap();
        drop(child);
        assert!(!marker.exists());
    }

    #[test]
    fn missing_program_is_an_error_up_front() {
        let e = GatedChild::spawn(Path::new("no-such-program-tk"), &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
