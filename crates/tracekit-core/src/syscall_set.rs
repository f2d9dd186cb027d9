//! Sets of syscalls chosen by the user, as strace's `-e trace=` reads them: names, globs
//! (`epoll_*`), classes (`%file %net %process %memory %signal %ipc`), and `!` to exclude.

use crate::syscalls::Arch;
use std::collections::BTreeSet;

/// The classes of `%class`, with their members (names of the x86-64 table; names missing on
/// another architecture are skipped), after strace's syscall classes.
const CLASSES: &[(&str, &[&str])] = &[
    (
        "file",
        &[
            "open",
            "openat",
            "openat2",
            "creat",
            "stat",
            "lstat",
            "newfstatat",
            "statx",
            "access",
            "faccessat",
            "faccessat2",
            "chdir",
            "chmod",
            "fchmodat",
            "fchmodat2",
            "chown",
            "lchown",
            "fchownat",
            "link",
            "linkat",
            "unlink",
            "unlinkat",
            "rename",
            "renameat",
            "renameat2",
            "mkdir",
            "mkdirat",
            "rmdir",
            "mknod",
            "mknodat",
            "readlink",
            "readlinkat",
            "symlink",
            "symlinkat",
            "truncate",
            "utime",
            "utimes",
            "utimensat",
            "futimesat",
            "execve",
            "execveat",
            "getxattr",
            "lgetxattr",
            "setxattr",
            "lsetxattr",
            "listxattr",
            "llistxattr",
            "removexattr",
            "lremovexattr",
            "statfs",
            "swapon",
            "swapoff",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "acct",
            "uselib",
            "name_to_handle_at",
            "inotify_add_watch",
            "fanotify_mark",
            "quotactl",
            "open_tree",
            "move_mount",
            "mount_setattr",
        ],
    ),
    (
        "net",
        &[
            "socket",
            "socketpair",
            "bind",
            "connect",
            "listen",
            "accept",
            "accept4",
            "getsockname",
            "getpeername",
            "sendto",
            "recvfrom",
            "sendmsg",
            "recvmsg",
            "sendmmsg",
            "recvmmsg",
            "shutdown",
            "setsockopt",
            "getsockopt",
        ],
    ),
    (
        "process",
        &[
            "clone",
            "clone3",
            "fork",
            "vfork",
            "execve",
            "execveat",
            "exit",
            "exit_group",
            "wait4",
            "waitid",
            "kill",
            "tkill",
            "tgkill",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
            "pidfd_open",
            "pidfd_send_signal",
        ],
    ),
    (
        "memory",
        &[
            "brk",
            "mmap",
            "munmap",
            "mremap",
            "mprotect",
            "madvise",
            "mlock",
            "mlock2",
            "munlock",
            "mlockall",
            "munlockall",
            "mincore",
            "msync",
            "remap_file_pages",
            "mbind",
            "set_mempolicy",
            "get_mempolicy",
            "migrate_pages",
            "move_pages",
            "pkey_mprotect",
            "process_madvise",
            "process_mrelease",
            "shmat",
            "shmdt",
            "map_shadow_stack",
            "mseal",
        ],
    ),
    (
        "signal",
        &[
            "rt_sigaction",
            "rt_sigprocmask",
            "rt_sigpending",
            "rt_sigsuspend",
            "rt_sigtimedwait",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
            "rt_sigreturn",
            "sigaltstack",
            "kill",
            "tkill",
            "tgkill",
            "pause",
            "signalfd",
            "signalfd4",
            "pidfd_send_signal",
        ],
    ),
    (
        "ipc",
        &[
            "msgget",
            "msgsnd",
            "msgrcv",
            "msgctl",
            "semget",
            "semop",
            "semtimedop",
            "semctl",
            "shmget",
            "shmat",
            "shmdt",
            "shmctl",
        ],
    ),
];

/// The highest syscall number looked at for globs and classes.
const MAX_NR: u32 = 1024;

/// The syscall numbers of `arch` that `spec` selects: comma-separated names, globs and
/// `%class`es, each may be prefixed by `!` to exclude it. With only exclusions, everything
/// else is selected. An unknown name is an error that suggests the closest known one.
pub fn select(arch: Arch, spec: &str) -> Result<BTreeSet<u32>, String> {
    let tokens: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(
            "empty syscall list (give names, globs like 'epoll_*', or %file, %net, ...)".into(),
        );
    }
    let all: BTreeSet<u32> = (0..MAX_NR).filter(|&nr| arch.name(nr).is_some()).collect();
    let only_exclusions = tokens.iter().all(|t| t.starts_with('!'));
    let mut chosen = if only_exclusions {
        all.clone()
    } else {
        BTreeSet::new()
    };
    for token in tokens {
        let (exclude, pattern) = match token.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, token),
        };
        let matched = matching(arch, &all, pattern)?;
        if exclude {
            chosen.retain(|nr| !matched.contains(nr));
        } else {
            chosen.extend(matched);
        }
    }
    Ok(chosen)
}

/// The numbers one name, glob or class stands for.
fn matching(arch: Arch, all: &BTreeSet<u32>, pattern: &str) -> Result<BTreeSet<u32>, String> {
    if let Some(class) = pattern.strip_prefix('%') {
        let (_, members) = CLASSES
            .iter()
            .find(|(name, _)| *name == class)
            .ok_or_else(|| {
                let known: Vec<String> = CLASSES.iter().map(|(n, _)| format!("%{n}")).collect();
                format!(
                    "unknown syscall class '%{class}' (known: {})",
                    known.join(" ")
                )
            })?;
        return Ok(members.iter().filter_map(|n| arch.number(n)).collect());
    }
    if pattern.contains(['*', '?', '[']) {
        let glob = glob::Pattern::new(pattern).map_err(|e| format!("bad glob '{pattern}': {e}"))?;
        let found: BTreeSet<u32> = all
            .iter()
            .copied()
            .filter(|&nr| arch.name(nr).is_some_and(|n| glob.matches(n)))
            .collect();
        if found.is_empty() {
            return Err(format!("'{pattern}' matches no {arch} syscall"));
        }
        return Ok(found);
    }
    match arch.number(pattern) {
        Some(nr) => Ok(BTreeSet::from([nr])),
        None => Err(unknown_name(arch, all, pattern)),
    }
}

fn unknown_name(arch: Arch, all: &BTreeSet<u32>, name: &str) -> String {
    let closest = all
        .iter()
        .filter_map(|&nr| arch.name(nr))
        .map(|known| (strsim::jaro_winkler(name, known), known))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((score, known)) if score > 0.8 => {
            format!("unknown {arch} syscall '{name}' (did you mean '{known}'?)")
        }
        _ => format!("unknown {arch} syscall '{name}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Vec<&'static str> {
        select(Arch::X86_64, spec)
            .unwrap()
            .into_iter()
            .filter_map(|nr| Arch::X86_64.name(nr))
            .collect()
    }

    #[test]
    fn names_globs_classes_and_exclusions() {
        assert_eq!(names("getppid,close"), ["close", "getppid"]);
        assert_eq!(
            names("epoll_*"),
            [
                "epoll_create",
                "epoll_ctl_old",
                "epoll_wait_old",
                "epoll_wait",
                "epoll_ctl",
                "epoll_pwait",
                "epoll_create1",
                "epoll_pwait2"
            ]
        );
        assert!(names("%net").contains(&"connect"));
        assert!(!names("%net,!connect").contains(&"connect"));
        let all_but_read = names("!read");
        assert!(!all_but_read.contains(&"read") && all_but_read.contains(&"write"));
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let err = select(Arch::X86_64, "getppdi").unwrap_err();
        assert!(err.contains("did you mean 'getppid'"), "{err}");
        assert!(
            select(Arch::X86_64, "%files")
                .unwrap_err()
                .contains("%file")
        );
        assert!(
            select(Arch::X86_64, "nosuch_*")
                .unwrap_err()
                .contains("matches no")
        );
        assert!(select(Arch::X86_64, ",").is_err());
    }
}
