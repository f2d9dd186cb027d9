//! Parsing and printing of sizes, durations and CPU lists as users type them.

use thiserror::Error;

/// A value on the command line that could not be understood.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {what} '{input}': {hint}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    hint: &'static str,
}

/// Parses a byte size such as `4096`, `64K`, `256M`, `1G`, `2GiB` (binary multiples).
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    let err = || ParseError {
        what: "size",
        input: input.to_owned(),
        hint: "use a number with an optional K, M, G or T suffix, e.g. 256M",
    };
    let s = input.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits);
    let n: u64 = num.parse().map_err(|_| err())?;
    let shift = match suffix
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(err()),
    };
    n.checked_mul(1 << shift).ok_or_else(err)
}

/// Parses an address: hexadecimal with `0x` (`0x100000000`), or decimal with an optional size
/// suffix as [`parse_size`] takes it (`4G`).
pub fn parse_address(input: &str) -> Result<u64, ParseError> {
    let s = input.trim();
    let error = |hint| ParseError {
        what: "address",
        input: input.to_owned(),
        hint,
    };
    let hex_hint = "use hexadecimal digits after 0x, e.g. 0x100000000";
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        // from_str_radix would also take a sign (`0x+10`).
        Some(hex) if !hex.bytes().all(|b| b.is_ascii_hexdigit()) => Err(error(hex_hint)),
        Some(hex) => u64::from_str_radix(hex, 16).map_err(|_| error(hex_hint)),
        None => parse_size(s).map_err(|_| {
            error("use 0x and hexadecimal digits, or a number with an optional K, M, G or T suffix")
        }),
    }
}

/// The highest CPU number a list may name: Linux's largest `NR_CPUS` is 8192. Without a bound,
/// `0-4294967296` asked for a 32 GiB vector and aborted the process.
pub const MAX_CPU: usize = 8191;

/// Parses a CPU list such as `0`, `0,1`, `0-3,6`; CPU numbers go up to [`MAX_CPU`].
pub fn parse_cpu_list(input: &str) -> Result<Vec<usize>, ParseError> {
    let err = || ParseError {
        what: "CPU list",
        input: input.to_owned(),
        hint: "use CPU numbers (0 to 8191) and ranges, e.g. 0,1 or 0-3",
    };
    let cpu = |s: &str| {
        s.parse()
            .ok()
            .filter(|&n: &usize| n <= MAX_CPU)
            .ok_or_else(err)
    };
    let mut cpus = Vec::new();
    for part in input.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (cpu(a)?, cpu(b)?);
                if a > b {
                    return Err(err());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(cpu(part)?),
        }
    }
    Ok(cpus)
}

/// Nanoseconds as milliseconds with three decimals, as perf trace prints latencies.
pub fn ns_to_ms(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}

/// A byte count in the largest binary unit that keeps it readable (`256 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_address("0x100000000"), Ok(1 << 32));
        assert_eq!(parse_address("4G"), Ok(4 << 30));
        assert_eq!(parse_address("4096"), Ok(4096));
        assert!(parse_address("0xg").is_err());
        assert!(parse_address("0x").is_err());
        assert!(parse_address("0x+10").is_err());
        assert!(parse_address("0x10000000000000000").is_err());
        assert!(parse_address("12Q").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5"), Ok(vec![0, 1, 2, 5]));
        assert!(parse_cpu_list("3-1").is_err());
    }

    #[test]
    fn printing() {
        assert_eq!(ns_to_ms(1_500_000.0), "1.500");
        assert_eq!(human_bytes(256 << 20), "256 MiB");
    }
}
