//! Errno names (`ENOENT`, ...) for error breakdowns.

/// The symbolic name of a positive errno value, e.g. `2` → `"ENOENT"`. Includes the
/// kernel-internal restart codes (512–516) that tracepoints see when a signal interrupts a
/// syscall that the kernel then restarts or fails with EINTR; user space never gets them.
pub fn name(errno: i32) -> String {
    let internal = match errno {
        512 => Some("ERESTARTSYS"),
        513 => Some("ERESTARTNOINTR"),
        514 => Some("ERESTARTNOHAND"),
        515 => Some("ENOIOCTLCMD"),
        516 => Some("ERESTART_RESTARTBLOCK"),
        _ => None,
    };
    if let Some(name) = internal {
        return name.to_owned();
    }
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("E{errno}"),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_names() {
        assert_eq!(super::name(2), "ENOENT");
        assert_eq!(super::name(9), "EBADF");
        assert_eq!(super::name(4000), "E4000");
        assert_eq!(super::name(516), "ERESTART_RESTARTBLOCK");
    }
}
