#!/usr/bin/env bash
# Builds the kernel's KVM selftests demand_paging_test and dirty_log_perf_test from Debian's
# linux-source-6.12 package, in a cache outside the repository (no kernel code is committed),
# and prints the folder holding the two binaries.
#
# Only what the selftests need is unpacked: the top-level build files, scripts/, include/,
# arch/x86/, usr/ (for `make headers`) and tools/. `make headers` at the top of the tree
# installs the UAPI headers the selftests include (usr/include), then the two binaries are
# built in tools/testing/selftests/kvm.
#
# Usage: bash bench/kvm-selftests.sh [CACHE]  (root; default /var/cache/tracekit/linux-6.12-kvm-selftests)
set -euo pipefail
CACHE=${1:-/var/cache/tracekit/linux-6.12-kvm-selftests}
PKG=linux-source-6.12
TARBALL=/usr/src/$PKG.tar.xz
KVM=tools/testing/selftests/kvm
TESTS=(demand_paging_test dirty_log_perf_test)

log() { echo "bench/kvm-selftests.sh: $*" >&2; }

install_source() {
    [ -f "$TARBALL" ] && return
    log "installing $PKG"
    # A fresh container has no package lists yet; fetch them only when apt cannot find the package.
    apt-cache show "$PKG" >/dev/null 2>&1 || apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$PKG" xz-utils >&2
}

unpack() {
    [ -f "$CACHE/.unpacked" ] && return
    log "unpacking the KVM selftests' part of $TARBALL into $CACHE"
    rm -rf "$CACHE" && mkdir -p "$CACHE"
    local top=${PKG}
    tar -xJf "$TARBALL" -C "$CACHE" --strip-components=1 \
        "$top/Makefile" "$top/Kbuild" "$top/Kconfig" "$top/scripts" "$top/include" \
        "$top/arch/Kconfig" "$top/arch/x86" "$top/usr" "$top/tools" "$top/init/Kconfig"
    touch "$CACHE/.unpacked"
}

build() {
    local missing=()
    for t in "${TESTS[@]}"; do [ -x "$CACHE/$KVM/$t" ] || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] && return
    log "building ${missing[*]} (make headers, then the tests)"
    make -C "$CACHE" -s -j"$(nproc)" headers >&2
    for t in "${missing[@]}"; do
        make -C "$CACHE/$KVM" -s -j"$(nproc)" "$CACHE/$KVM/$t" >&2
    done
}

install_source
unpack
build
echo "$CACHE/$KVM"
