//! Hex strings as users type them, and hexdumps that mark the bytes a program changed.
//!
//! Written here rather than taken from the `hex` crate because input must tolerate the
//! spaces, colons and line breaks of copied dumps, and the dump needs a diff marker.

use crate::Error;

/// Parses hex such as `"45 00 00 1c"`, `"45:00"` or `"0x4500001c"` (whitespace, `:`, `-`
/// and `_` are ignored).
pub fn parse(text: &str) -> Result<Vec<u8>, Error> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && !b":-_".contains(b))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(Error::Packet(format!(
            "hex has an odd number of digits ({}); each byte needs two",
            digits.len()
        )));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(s, 16).map_err(|_| Error::Packet(format!("'{s}' is not a hex byte")))
        })
        .collect()
}

/// Lower-case hex without separators.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Offsets where `after` differs from `before` (bytes beyond the shorter one count as changed).
pub fn changed_offsets(before: &[u8], after: &[u8]) -> Vec<usize> {
    (0..after.len())
        .filter(|&i| before.get(i) != Some(&after[i]))
        .collect()
}

/// A hexdump of `after`, 16 bytes a line, in `xxd` layout; bytes that differ from `before`
/// are wrapped by `mark` (colour on a terminal) and flagged with `^^` on the line below.
pub fn dump(before: &[u8], after: &[u8], mark: impl Fn(&str) -> String) -> String {
    dump_lines(before, after, &mark, usize::MAX)
}

/// Like [`dump`], but keeps only the first `head` lines, the changed lines and one line either
/// side of them; runs of other lines become `...`, so a big packet with one change stays short.
pub fn dump_compact(
    before: &[u8],
    after: &[u8],
    mark: impl Fn(&str) -> String,
    head: usize,
) -> String {
    dump_lines(before, after, &mark, head)
}

fn dump_lines(before: &[u8], after: &[u8], mark: &dyn Fn(&str) -> String, head: usize) -> String {
    let lines: Vec<&[u8]> = after.chunks(16).collect();
    let changed_line = |line: usize| {
        (0..lines[line].len()).any(|i| before.get(line * 16 + i) != Some(&lines[line][i]))
    };
    let keep = |line: usize| {
        line < head || (line.saturating_sub(1)..=(line + 1).min(lines.len() - 1)).any(changed_line)
    };
    let mut out = String::new();
    let mut skipped = 0;
    for (line, chunk) in lines.iter().enumerate() {
        if !keep(line) {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            out.push_str(&format!("  ...   ({skipped} unchanged lines)\n"));
            skipped = 0;
        }
        out.push_str(&dump_line(before, line * 16, chunk, mark));
    }
    if skipped > 0 {
        out.push_str(&format!("  ...   ({skipped} unchanged lines)\n"));
    }
    out
}

fn dump_line(before: &[u8], base: usize, chunk: &[u8], mark: &dyn Fn(&str) -> String) -> String {
    let changed: Vec<bool> = (0..chunk.len())
        .map(|i| before.get(base + i) != Some(&chunk[i]))
        .collect();
    let cells: Vec<String> = chunk
        .iter()
        .zip(&changed)
        .map(|(b, &c)| {
            if c {
                mark(&format!("{b:02x}"))
            } else {
                format!("{b:02x}")
            }
        })
        .collect();
    let ascii: String = chunk
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    let pad = "   ".repeat(16 - chunk.len());
    let mut out = format!("  {base:04x}  {} {pad} {ascii}\n", cells.join(" "));
    if changed.iter().any(|&c| c) {
        let marks: Vec<&str> = changed
            .iter()
            .map(|&c| if c { "^^" } else { "  " })
            .collect();
        out.push_str(&format!("        {}\n", marks.join(" ").trim_end()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_copied_dumps() {
        assert_eq!(
            parse("45 00:00-1c\n ff").unwrap(),
            vec![0x45, 0, 0, 0x1c, 0xff]
        );
        assert_eq!(parse("0xABcd").unwrap(), vec![0xab, 0xcd]);
        assert!(parse("abc").is_err());
        assert!(parse("zz").is_err());
    }

    #[test]
    fn dump_marks_changed_bytes() {
        assert_eq!(changed_offsets(&[1, 2, 3], &[1, 9, 3, 4]), vec![1, 3]);
        let marked = dump(&[1, 2, 3], &[1, 9, 3, 4], |s| format!("[{s}]"));
        assert!(marked.starts_with("  0000  01 [09] 03 [04]"), "{marked}");
        let plain = dump(&[1, 2, 3], &[1, 9, 3, 4], str::to_owned);
        let lines: Vec<&str> = plain.lines().collect();
        assert!(lines[0].starts_with("  0000  01 09 03 04"), "{plain}");
        // The marks sit under the changed bytes.
        assert_eq!(lines[1].find("^^"), lines[0].find("09"), "{plain}");
        assert_eq!(lines[1].rfind("^^"), lines[0].find("04"), "{plain}");
    }

    #[test]
    fn compact_dump_elides_unchanged_lines() {
        let before = vec![0u8; 320];
        let mut after = before.clone();
        after[200] = 1;
        let text = dump_compact(&before, &after, str::to_owned, 2);
        let lines: Vec<&str> = text.lines().collect();
        // Lines 0-1 (head), "... 9", lines 11-13 around the change at line 12, its marks, "... 6".
        assert_eq!(lines.len(), 2 + 1 + 3 + 1 + 1, "{text}");
        assert_eq!(lines[2], "  ...   (9 unchanged lines)");
        assert!(lines[3].starts_with("  00b0"), "{text}");
        assert_eq!(lines[7], "  ...   (6 unchanged lines)");
        assert_eq!(dump_compact(&[], &[], str::to_owned, 4), "");
    }
}
