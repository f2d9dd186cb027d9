//! System call numbers and names for the architectures tracekit reports on.
//!
//! The tables come from the `syscalls` crate, which generates them from the kernel's
//! syscall tables; they are not copied here.

use std::fmt;

/// An architecture whose syscall numbering tracekit knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (the 64-bit ABI).
    X86_64,
    /// AArch64 (the generic syscall table).
    Aarch64,
    /// i386: the table of 32-bit (ia32) processes on x86-64.
    I386,
}

impl Arch {
    /// The architecture this program was built for.
    pub const fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The syscall name for `nr`, or `None` if the table has no such number.
    pub fn name(self, nr: u32) -> Option<&'static str> {
        match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::new(nr as usize).map(|s| s.name()),
            Arch::Aarch64 => syscalls::aarch64::Sysno::new(nr as usize).map(|s| s.name()),
            Arch::I386 => syscalls::x86::Sysno::new(nr as usize).map(|s| s.name()),
        }
    }

    /// The syscall number for `name`, or `None` if the table has no such name.
    pub fn number(self, name: &str) -> Option<u32> {
        match self {
            Arch::X86_64 => name
                .parse::<syscalls::x86_64::Sysno>()
                .ok()
                .map(|s| s.id() as u32),
            Arch::Aarch64 => name
                .parse::<syscalls::aarch64::Sysno>()
                .ok()
                .map(|s| s.id() as u32),
            Arch::I386 => name
                .parse::<syscalls::x86::Sysno>()
                .ok()
                .map(|s| s.id() as u32),
        }
    }

    /// The syscall name for `nr`, or `syscall_<nr>` for numbers missing from the table.
    pub fn display_name(self, nr: u32) -> String {
        self.name(nr)
            .map_or_else(|| format!("syscall_{nr}"), str::to_owned)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::I386 => "i386",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn names_of_both_tables() {
        assert_eq!(Arch::X86_64.name(110), Some("getppid"));
        assert_eq!(Arch::Aarch64.name(173), Some("getppid"));
        assert_eq!(Arch::X86_64.number("getppid"), Some(110));
        assert_eq!(Arch::X86_64.display_name(100_000), "syscall_100000");
        assert_eq!(Arch::I386.name(64), Some("getppid"));
        assert_eq!(Arch::I386.number("exit_group"), Some(252));
    }
}
