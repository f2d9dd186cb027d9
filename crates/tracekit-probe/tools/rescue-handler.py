#!/usr/bin/env python3
"""Assembles the kill-safety SIGTRAP handler (rescue/handler.S) with GNU as and objcopy and
writes its bytes into rescue/area.rs's `CODE`, so that CI can check the two match (run from
crates/tracekit-probe; `cargo xtask ci` does, then compares with git)."""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DIR = Path("src/breakpoint/transport/ptrace/session/rescue")


def assemble(source: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        obj, binary = Path(tmp, "handler.o"), Path(tmp, "handler.bin")
        subprocess.run(["as", "--64", "-o", obj, source], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", obj, binary], check=True)
        return binary.read_bytes()


def main() -> int:
    code = assemble(DIR / "handler.S")
    area = DIR / "area.rs"
    text = area.read_text()
    pattern = re.compile(r"(pub\(super\) const CODE: &\[u8\] = &\[\n)(.*?)(\n\];)", re.S)
    if not pattern.search(text):
        print(f"{area}: no `CODE` array found", file=sys.stderr)
        return 1
    rows = (
        "    " + " ".join(f"0x{b:02x}," for b in code[i : i + 16]) for i in range(0, len(code), 16)
    )
    area.write_text(pattern.sub(lambda m: m.group(1) + "\n".join(rows) + m.group(3), text, 1))
    print(f"{area}: CODE is handler.S assembled ({len(code)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
