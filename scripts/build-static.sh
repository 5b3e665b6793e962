#!/usr/bin/env bash
# A static lsbackup (x86_64 musl): one file that runs on any x86_64 Linux, no glibc needed.
#
#   scripts/build-static.sh            # release build -> target/x86_64-unknown-linux-musl/release/lsbackup
#   scripts/build-static.sh --check    # dev profile (faster), for CI: builds, checks, runs it
#
# Needs the Rust target (`rustup target add x86_64-unknown-linux-musl`) and a C compiler for
# musl (Debian: musl-tools) for the C parts (zstd, aws-lc). Exits 3 when the target cannot be
# installed (no network to rustup's servers): the build is then not possible on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
profile=release
if [ "${1:-}" = --check ]; then profile=dev; fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    if ! rustup target add "$target" >&2; then
        echo "build-static.sh: rustup could not install $target: no static build here" >&2
        exit 3
    fi
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
    else
        echo "build-static.sh: musl-gcc missing (Debian: apt-get install musl-tools)" >&2
        exit 1
    fi
fi
cargo build --locked --profile "$profile" --target "$target" >&2
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="target/$target/$dir/lsbackup"
# static: no program interpreter, no shared library needed
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    echo "build-static.sh: $bin asks for a dynamic loader" >&2
    exit 1
fi
if readelf -d "$bin" | grep -q NEEDED; then
    echo "build-static.sh: $bin needs shared libraries:" >&2
    readelf -d "$bin" | grep NEEDED >&2
    exit 1
fi
"$bin" --version >&2
echo "$bin"
