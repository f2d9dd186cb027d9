//! Errno names (`ENOENT`, ...) for error breakdowns.

/// The symbolic name of a positive errno value, e.g. `2` → `"ENOENT"`.
pub fn name(errno: i32) -> String {
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
    }
}
