#!/usr/bin/env bash
# Compiles every BPF program under bpf/ (bpf/*.bpf.c) into bpf/obj/<name>.bpf.o.
# The objects are committed and embedded into the Rust crates, so building tracekit needs
# only cargo; CI reruns this script and fails if the result differs from the committed files.
# -ffile-prefix-map keeps the build folder out of the object, so the bytes are reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang-19}
command -v "$CLANG" >/dev/null || { echo "bpf/build.sh: $CLANG not found; apt-get install clang-19 libbpf-dev" >&2; exit 1; }
mkdir -p bpf/obj
for src in bpf/*.bpf.c; do
    obj="bpf/obj/$(basename "${src%.c}").o"
    "$CLANG" -O2 -g -target bpf -D__TARGET_ARCH_x86 \
        -I/usr/include/x86_64-linux-gnu -Ibpf/include \
        -ffile-prefix-map="$PWD"=. -fdebug-prefix-map="$PWD"=. \
        -Wall -Werror -c "$src" -o "$obj"
    echo "built $obj"
done
