//! Processes, as every capability sees them: finding a program the way `execvp` does, whether
//! a pid is alive, the process a thread belongs to, how a process ended, and the progress
//! callback long runs report through.

use std::path::{Path, PathBuf};

/// Why a program could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// No file of that name on `PATH` (or at that path).
    #[error("{}", not_found(.0))]
    NotFound(String),
    /// A file is there but cannot be executed.
    #[error("{program} {reason}")]
    NotExecutable {
        /// The program as given.
        program: String,
        /// `is a directory` or `is not executable (check its permissions)`.
        reason: &'static str,
    },
}

fn not_found(program: &str) -> String {
    if program.contains('/') {
        format!("{program}: no such file")
    } else {
        format!("{program} not found on PATH")
    }
}

/// Finds `program` as `execvp` would: a name with a `/` is taken as a path, any other is looked
/// up in the directories of `PATH`, and the first executable file wins. So a missing program is
/// reported before anything is attached or forked.
pub fn find_program(program: &Path) -> Result<PathBuf, FindError> {
    let name = program.to_string_lossy().into_owned();
    let candidates: Vec<PathBuf> = if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        vec![program.to_path_buf()]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .collect()
    };
    let existing: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    if let Some(found) = existing.iter().find(|p| executable_file(p)) {
        return Ok((*found).clone());
    }
    match existing.first() {
        None => Err(FindError::NotFound(name)),
        Some(first) => Err(FindError::NotExecutable {
            program: name,
            reason: if first.is_dir() {
                "is a directory"
            } else {
                "is not executable (check its permissions)"
            },
        }),
    }
}

fn executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether process (or thread) `pid` exists and is neither a zombie nor dead (states Z, X).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat_alive(&stat))
}

/// Whether a `/proc/PID/stat` line shows a process that is neither a zombie nor dead.
pub fn stat_alive(stat: &str) -> bool {
    // The state follows the parenthesised comm, which may itself contain ") ".
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// The thread group (process) of thread `tid`, from `/proc/TID/status`; `None` when it is gone.
pub fn tgid_of(tid: u32) -> Option<u32> {
    status_tgid(&std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?)
}

/// The `Tgid:` of a `/proc/TID/status` text.
pub fn status_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The uid of a user given by name (from the password database) or as a number.
pub fn user_id(user: &str) -> Option<u32> {
    user.parse().ok().or_else(|| {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    })
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid system), from `/proc/self/mounts`.
pub fn cgroup2_mount() -> Option<PathBuf> {
    mounts_cgroup2(&std::fs::read_to_string("/proc/self/mounts").ok()?)
}

/// The first cgroup2 mount point of a `/proc/PID/mounts` text.
pub fn mounts_cgroup2(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// From a `waitpid` status word; `None` when the process has not ended (stopped, continued).
    pub fn from_wait_status(status: i32) -> Option<ExitStatus> {
        use nix::libc::{WEXITSTATUS, WIFEXITED, WIFSIGNALED, WTERMSIG};
        if WIFEXITED(status) {
            Some(ExitStatus::Code(WEXITSTATUS(status)))
        } else if WIFSIGNALED(status) {
            Some(ExitStatus::Signal(WTERMSIG(status)))
        } else {
            None
        }
    }

    /// The exit code a shell would show for it, which a command passes through: the code, or
    /// 128 + the signal.
    pub fn exit_code(self) -> u8 {
        match self {
            ExitStatus::Code(code) => code as u8,
            ExitStatus::Signal(sig) => (128 + sig) as u8,
        }
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            // Neither happens for a process that has ended; -1 as the shell shows it (255).
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// What a long run reports its progress through: called with the steps done so far (pages,
/// batches, packets), never more than the total the caller was told.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn users_are_found_by_name_or_number() {
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(user_id("65534"), Some(65534));
        assert_eq!(user_id("no-such-user-here"), None);
    }

    #[test]
    fn wait_statuses_and_std_statuses_agree() {
        for raw in [0, 7 << 8, 255 << 8, 9, 15, 6 | 0x80] {
            let std = std::process::ExitStatus::from_raw(raw);
            assert_eq!(
                ExitStatus::from_wait_status(raw),
                Some(std.into()),
                "{raw:#x}"
            );
        }
        // Stopped by SIGSTOP: not an end.
        assert_eq!(ExitStatus::from_wait_status(0x137f), None);
        assert_eq!(ExitStatus::Code(3).exit_code(), 3);
        assert_eq!(ExitStatus::Signal(9).exit_code(), 137);
    }

    #[test]
    fn programs_are_found_like_execvp() {
        assert_eq!(
            find_program(Path::new("sh")).map(|p| p.is_absolute()),
            Ok(true)
        );
        assert_eq!(
            find_program(Path::new("tracekit-no-such-program")),
            Err(FindError::NotFound("tracekit-no-such-program".into()))
        );
        assert_eq!(
            find_program(Path::new("/etc")).unwrap_err().to_string(),
            "/etc is a directory"
        );
        assert_eq!(
            find_program(Path::new("/etc/passwd"))
                .unwrap_err()
                .to_string(),
            "/etc/passwd is not executable (check its permissions)"
        );
    }

    #[test]
    fn this_process_is_alive_and_its_own_thread_group() {
        let me = std::process::id();
        assert!(alive(me));
        assert_eq!(tgid_of(me), Some(me));
        assert!(!alive(0));
    }
}
