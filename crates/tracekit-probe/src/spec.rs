//! Probe specifications as users write them (`uprobe:/bin/bash:readline+4`).
//! Parsing lives here; see [`ProbeSpec::parse`].
//!
//! Accepted forms (bpftrace's, plus a short form):
//! - `uprobe:BINARY:SYMBOL`, `uprobe:BINARY:SYMBOL+OFF`, `uprobe:BINARY:0xADDR`
//! - `uretprobe:BINARY:SYMBOL` (and `u:` / `ur:` abbreviations)
//! - `kprobe:FUNC` (`k:`)
//! - `BINARY:SYMBOL`, meaning both `uprobe:` and `uretprobe:` on it.
//! - a symbol in double quotes, for C++ and Rust names that hold `::`
//!   (`uprobe:./app:"ns::Foo::bar"`, bpftrace's `uprobe:./app:cpp:"ns::Foo::bar"` too); it is
//!   matched against the mangled and the demangled names.
//!
//! BINARY is kept as written; [`crate::symbols`] turns it into a file (PATH lookup, library
//! directories, or the target's `/proc/PID/maps`).

use serde::Serialize;
use std::path::PathBuf;

/// What a probe fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Entry of a user function (or any instruction address in it).
    Uprobe,
    /// Return of a user function.
    Uretprobe,
    /// Entry of a kernel function.
    Kprobe,
    /// A USDT probe site (an SDT note of a program or library).
    Usdt,
}

impl ProbeKind {
    /// The spec prefix of this kind (`uprobe`, `uretprobe`, `kprobe`).
    pub fn prefix(self) -> &'static str {
        match self {
            ProbeKind::Uprobe => "uprobe",
            ProbeKind::Uretprobe => "uretprobe",
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Usdt => "usdt",
        }
    }
}

/// Where a probe goes inside a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeLocation {
    /// A symbol plus a byte offset from its start.
    Symbol {
        /// The symbol name from .symtab/.dynsym.
        name: String,
        /// Offset in bytes from the symbol's address.
        offset: u64,
    },
    /// A virtual address as in the ELF file (not a runtime address).
    Address(u64),
    /// A USDT probe: `provider:name` from the binary's SDT notes (either may be a glob).
    Usdt {
        /// The provider; `None` when the spec names only the probe (`usdt:BINARY:NAME`).
        provider: Option<String>,
        /// The probe's name.
        name: String,
    },
}

/// One parsed probe specification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeSpec {
    /// The text the user wrote, used as the probe's name in reports.
    pub text: String,
    /// Entry, return or kernel probe.
    pub kind: ProbeKind,
    /// The binary for user probes (empty for kprobes).
    pub binary: PathBuf,
    /// Where in the binary (for kprobes: the function name).
    pub location: ProbeLocation,
}

/// Why a probe spec could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing to parse.
    #[error("empty probe spec; write e.g. uprobe:/bin/bash:readline or /bin/bash:readline")]
    Empty,
    /// The prefix before the first `:` is not a probe type.
    #[error("unknown probe type `{kind}` in `{spec}`; use uprobe:, uretprobe: or kprobe:")]
    UnknownKind {
        /// The whole spec.
        spec: String,
        /// The unknown prefix.
        kind: String,
    },
    /// A user probe without `BINARY:` or without a location.
    #[error(
        "`{spec}` lacks {what}; write {kind}:BINARY:SYMBOL[+OFFSET] or {kind}:BINARY:0xADDRESS"
    )]
    Incomplete {
        /// The whole spec.
        spec: String,
        /// The probe type written.
        kind: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// `+OFF` or `0xADDR` is not a number.
    #[error(
        "`{text}` in `{spec}` is not a number; offsets are decimal or 0x-hex, addresses 0x-hex"
    )]
    BadNumber {
        /// The whole spec.
        spec: String,
        /// The part that failed.
        text: String,
    },
    /// A `usdt:` spec without a binary or without a probe name.
    #[error("`{spec}` lacks {what}; write usdt:BINARY:PROVIDER:NAME or usdt:BINARY:NAME")]
    IncompleteUsdt {
        /// The whole spec.
        spec: String,
        /// What is missing.
        what: &'static str,
    },
    /// Something this tool parses but does not offer.
    #[error("`{spec}`: {reason}")]
    Unsupported {
        /// The whole spec.
        spec: String,
        /// What to do instead.
        reason: &'static str,
    },
}

impl ProbeSpec {
    /// Parses one spec as written on the command line. The short form `BINARY:SYMBOL`
    /// yields two specs (entry then return), every other form one.
    pub fn parse(text: &str) -> Result<Vec<ProbeSpec>, SpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpecError::Empty);
        }
        let (head, rest) = text.split_once(':').unwrap_or((text, ""));
        let kind = match head {
            "uprobe" | "u" => ProbeKind::Uprobe,
            "uretprobe" | "ur" => ProbeKind::Uretprobe,
            "kprobe" | "k" => ProbeKind::Kprobe,
            "kretprobe" | "kr" | "fentry" | "fexit" | "kfunc" | "kretfunc" => {
                return Err(SpecError::Unsupported {
                    spec: text.into(),
                    reason: "only kprobe: is accepted for kernel functions (and this needs a kernel with \
                             kprobes); for system calls use `tracekit trace summary`",
                });
            }
            "usdt" | "U" => return Self::parse_usdt(text, rest).map(|s| vec![s]),
            "tracepoint" | "t" | "rawtracepoint" | "profile" | "interval" => {
                return Err(SpecError::Unsupported {
                    spec: text.into(),
                    reason: "tracepoints and timers are not probe targets; \
                             use `tracekit trace summary` for system calls",
                });
            }
            // BINARY:SYMBOL has exactly one ':' (a longer path would need the full form).
            _ if !rest.is_empty() && (!rest.contains(':') || quoted(text).is_some()) => {
                return Self::parse_short(text);
            }
            _ => {
                return Err(SpecError::UnknownKind {
                    spec: text.into(),
                    kind: head.into(),
                });
            }
        };
        if kind == ProbeKind::Kprobe {
            return Self::parse_kprobe(text, rest).map(|s| vec![s]);
        }
        let incomplete = |what| SpecError::Incomplete {
            spec: text.into(),
            kind: kind.prefix(),
            what,
        };
        if let Some((binary, name)) = quoted(rest) {
            if binary.is_empty() || name.is_empty() {
                return Err(incomplete("a binary and a name in the quotes"));
            }
            return Ok(vec![ProbeSpec {
                text: text.into(),
                kind,
                binary: binary.into(),
                location: ProbeLocation::Symbol {
                    name: name.into(),
                    offset: 0,
                },
            }]);
        }
        // rsplit: the location never contains ':', a path might.
        let (binary, loc) = rest
            .rsplit_once(':')
            .ok_or_else(|| incomplete("a BINARY: part"))?;
        if binary.is_empty() {
            return Err(incomplete("a binary"));
        }
        let location = parse_location(text, loc).map_err(|e| match e {
            None => incomplete("a symbol or address"),
            Some(e) => e,
        })?;
        Ok(vec![ProbeSpec {
            text: text.into(),
            kind,
            binary: binary.into(),
            location,
        }])
    }

    /// Parses every spec of a command line, expanding short forms, in order.
    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Vec<ProbeSpec>, SpecError> {
        let mut out = Vec::new();
        for t in texts {
            out.extend(Self::parse(t.as_ref())?);
        }
        Ok(out)
    }

    fn parse_short(text: &str) -> Result<Vec<ProbeSpec>, SpecError> {
        let mut specs = Vec::with_capacity(2);
        for kind in [ProbeKind::Uprobe, ProbeKind::Uretprobe] {
            let full = format!("{}:{text}", kind.prefix());
            let mut s = Self::parse(&full)?;
            specs.append(&mut s);
        }
        Ok(specs)
    }

    fn parse_kprobe(text: &str, rest: &str) -> Result<ProbeSpec, SpecError> {
        let incomplete = |what| SpecError::Incomplete {
            spec: text.into(),
            kind: "kprobe",
            what,
        };
        if rest.contains(':') {
            return Err(SpecError::Unsupported {
                spec: text.into(),
                reason: "kprobe takes only a kernel function name: kprobe:FUNC[+OFFSET]",
            });
        }
        match parse_location(text, rest) {
            Err(None) => Err(incomplete("a kernel function name")),
            Err(Some(e)) => Err(e),
            Ok(location) => Ok(ProbeSpec {
                text: text.into(),
                kind: ProbeKind::Kprobe,
                binary: PathBuf::new(),
                location,
            }),
        }
    }

    /// `usdt:BINARY:PROVIDER:NAME` or `usdt:BINARY:NAME` (the last two words are the probe:
    /// with three or more, provider and name; with two, the name).
    fn parse_usdt(text: &str, rest: &str) -> Result<ProbeSpec, SpecError> {
        let incomplete = |what| SpecError::IncompleteUsdt {
            spec: text.into(),
            what,
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (binary, provider, name) = match parts.as_slice() {
            [] | [_] => return Err(incomplete("a BINARY: part and a probe name")),
            [binary, name] => (binary.to_string(), None, *name),
            [binary @ .., provider, name] => (binary.join(":"), Some(*provider), *name),
        };
        if binary.is_empty() {
            return Err(incomplete("a binary"));
        }
        if name.is_empty() || provider.is_some_and(str::is_empty) {
            return Err(incomplete("a provider and a probe name"));
        }
        Ok(ProbeSpec {
            text: text.into(),
            kind: ProbeKind::Usdt,
            binary: binary.into(),
            location: ProbeLocation::Usdt {
                provider: provider.map(str::to_owned),
                name: name.into(),
            },
        })
    }

    /// The same probe on one concrete symbol: `name` as the file spells it (unambiguous), and
    /// `display` in the spec's text (what reports show), quoted when it holds a `:`.
    pub fn for_symbol(&self, name: &str, display: &str) -> ProbeSpec {
        let binary = self.binary.display();
        let shown = if display.contains(':') {
            format!("\"{display}\"")
        } else {
            display.to_owned()
        };
        ProbeSpec {
            text: format!("{}:{binary}:{shown}", self.kind.prefix()),
            kind: self.kind,
            binary: self.binary.clone(),
            location: ProbeLocation::Symbol {
                name: name.to_owned(),
                offset: 0,
            },
        }
    }

    /// The symbol name, if the probe is placed by symbol.
    pub fn symbol(&self) -> Option<&str> {
        match &self.location {
            ProbeLocation::Symbol { name, .. } => Some(name),
            ProbeLocation::Address(_) | ProbeLocation::Usdt { .. } => None,
        }
    }
}

/// `BINARY:"NAME"` (or bpftrace's `BINARY:cpp:"NAME"`) split into the binary and the name.
pub(crate) fn quoted(rest: &str) -> Option<(&str, &str)> {
    let inner = rest.strip_suffix('"')?;
    let (binary, name) = inner.rsplit_once(":\"")?;
    let binary = ["cpp", "rust"]
        .iter()
        .find_map(|lang| binary.strip_suffix(&format!(":{lang}")))
        .unwrap_or(binary);
    Some((binary, name))
}

/// `SYMBOL`, `SYMBOL+OFF` or `0xADDR`; `Err(None)` when empty.
fn parse_location(spec: &str, loc: &str) -> Result<ProbeLocation, Option<SpecError>> {
    if loc.is_empty() {
        return Err(None);
    }
    let bad = |t: &str| {
        Some(SpecError::BadNumber {
            spec: spec.into(),
            text: t.into(),
        })
    };
    if let Some(hex) = loc.strip_prefix("0x").or_else(|| loc.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map(ProbeLocation::Address)
            .map_err(|_| bad(loc));
    }
    let (name, offset) = match loc.split_once('+') {
        Some((name, off)) => (name, parse_number(off).ok_or_else(|| bad(off))?),
        None => (loc, 0),
    };
    if name.is_empty() {
        return Err(None);
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad(name));
    }
    Ok(ProbeLocation::Symbol {
        name: name.into(),
        offset,
    })
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl std::fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> ProbeSpec {
        let mut v = ProbeSpec::parse(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn uprobe_forms() {
        let s = one("uprobe:/bin/bash:readline");
        assert_eq!(s.kind, ProbeKind::Uprobe);
        assert_eq!(s.binary, PathBuf::from("/bin/bash"));
        assert_eq!(
            s.location,
            ProbeLocation::Symbol {
                name: "readline".into(),
                offset: 0
            }
        );
        let s = one("uretprobe:libc.so.6:malloc+0x10");
        assert_eq!(s.kind, ProbeKind::Uretprobe);
        assert_eq!(s.binary, PathBuf::from("libc.so.6"));
        assert_eq!(
            s.location,
            ProbeLocation::Symbol {
                name: "malloc".into(),
                offset: 16
            }
        );
        assert_eq!(
            one("u:bash:main+4").location,
            ProbeLocation::Symbol {
                name: "main".into(),
                offset: 4
            }
        );
        assert_eq!(
            one("uprobe:./target:0x1139").location,
            ProbeLocation::Address(0x1139)
        );
        assert_eq!(one("ur:/a:b:f").binary, PathBuf::from("/a:b"));
    }

    #[test]
    fn short_form_is_entry_and_return() {
        let v = ProbeSpec::parse("/bin/bash:readline").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].kind, v[1].kind),
            (ProbeKind::Uprobe, ProbeKind::Uretprobe)
        );
        assert_eq!(v[0].text, "uprobe:/bin/bash:readline");
        assert_eq!(v[1].text, "uretprobe:/bin/bash:readline");
        assert_eq!(
            ProbeSpec::parse_all(&["bash:main", "uprobe:x:y"])
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn quoted_names_may_hold_colons() {
        for text in [
            r#"uprobe:./app:"ns::Foo::bar(int)""#,
            r#"uprobe:./app:cpp:"ns::Foo::bar(int)""#,
        ] {
            let s = &ProbeSpec::parse(text).unwrap()[0];
            assert_eq!(s.binary, PathBuf::from("./app"));
            assert_eq!(s.symbol(), Some("ns::Foo::bar(int)"));
        }
        let short = ProbeSpec::parse(r#"/usr/lib/x.so:"a::b""#).unwrap();
        assert_eq!(short.len(), 2);
        assert_eq!(short[1].kind, ProbeKind::Uretprobe);
        assert_eq!(short[1].symbol(), Some("a::b"));
        assert!(ProbeSpec::parse(r#"uprobe:./app:"""#).is_err());
    }

    #[test]
    fn kprobe() {
        let s = one("kprobe:do_sys_openat2");
        assert_eq!(s.kind, ProbeKind::Kprobe);
        assert_eq!(s.binary, PathBuf::new());
        assert_eq!(s.symbol(), Some("do_sys_openat2"));
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        assert_eq!(ProbeSpec::parse(" "), Err(SpecError::Empty));
        let e = ProbeSpec::parse("uprobe:/bin/bash").unwrap_err();
        assert!(e.to_string().contains("BINARY:SYMBOL"), "{e}");
        let e = ProbeSpec::parse("uprobe:/bin/bash:").unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::Incomplete {
                    what: "a symbol or address",
                    ..
                }
            ),
            "{e}"
        );
        let e = ProbeSpec::parse("uprobe:/bin/bash:0xzz").unwrap_err();
        assert!(matches!(e, SpecError::BadNumber { .. }), "{e}");
        let e = ProbeSpec::parse("uprobe:/bin/bash:f+x").unwrap_err();
        assert!(matches!(e, SpecError::BadNumber { .. }), "{e}");
        let e = ProbeSpec::parse("bogus:a:b").unwrap_err();
        assert!(matches!(e, SpecError::UnknownKind { .. }), "{e}");
        assert!(ProbeSpec::parse("readline").is_err());
        assert!(ProbeSpec::parse("kprobe:").is_err());
        assert!(matches!(
            ProbeSpec::parse("kretprobe:f"),
            Err(SpecError::Unsupported { .. })
        ));
    }

    #[test]
    fn usdt_forms() {
        let s = one("usdt:./app:tk:step");
        assert_eq!(
            (s.kind, s.binary.clone()),
            (ProbeKind::Usdt, "./app".into())
        );
        assert_eq!(
            s.location,
            ProbeLocation::Usdt {
                provider: Some("tk".into()),
                name: "step".into()
            }
        );
        let s = one("usdt:libc:setjmp");
        assert_eq!(
            (s.binary, s.location),
            (
                PathBuf::from("libc"),
                ProbeLocation::Usdt {
                    provider: None,
                    name: "setjmp".into()
                }
            )
        );
        assert_eq!(one("usdt:/a:b:p:n").binary, PathBuf::from("/a:b"));
        for bad in ["usdt:", "usdt:app", "usdt::n", "usdt:app::n", "usdt:app:p:"] {
            let e = ProbeSpec::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("usdt:BINARY:PROVIDER:NAME"),
                "{bad}: {e}"
            );
        }
    }
}
