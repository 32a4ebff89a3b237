#!/usr/bin/env bash
# Type-checks the whole workspace for Apple silicon with Metal from any host: `cargo clippy
# --all-targets -D warnings` for aarch64-apple-darwin with every package's `metal` feature.
#
# The C build scripts on that path (aws-lc-sys under hf-hub's TLS, the bundled OpenH264 and FDK
# AAC) need a C compiler for macOS. Zig from PyPI (`ziglang`) stands in for it: a venv and
# small wrappers, all under the cargo target folder, made once and reused. Needs python3 and
# rustup (the aarch64-apple-darwin standard library is added when missing).
#
#   scripts/check-apple.sh [extra cargo clippy arguments]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
triple=aarch64-apple-darwin
target_dir="${CARGO_TARGET_DIR:-$root/target}"
tools="$target_dir/apple-tools"
venv="$target_dir/zig-venv"

if ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
fi

if ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet ziglang
fi
py="$venv/bin/python"

# cc-rs adds `-arch arm64`, `--target=...` and `-mmacosx-version-min=...` for Apple targets; zig
# takes its own `-target` and rejects or misreads those, so the wrapper drops them.
mkdir -p "$tools"
write_cc() { # name, zig subcommand
    cat >"$tools/$1.tmp" <<WRAPPER
#!/usr/bin/env bash
# Made by scripts/check-apple.sh: zig $2 for aarch64-macos.
args=()
skip=0
for a in "\$@"; do
    if [ "\$skip" = 1 ]; then skip=0; continue; fi
    case "\$a" in
        -arch) skip=1 ;;
        --target=*|-mmacosx-version-min=*) ;;
        *) args+=("\$a") ;;
    esac
done
exec "$py" -m ziglang $2 -target aarch64-macos "\${args[@]}"
WRAPPER
    chmod +x "$tools/$1.tmp"
    mv "$tools/$1.tmp" "$tools/$1"
}
write_cc cc cc
write_cc c++ c++
cat >"$tools/ar.tmp" <<WRAPPER
#!/usr/bin/env bash
# Made by scripts/check-apple.sh: zig ar.
exec "$py" -m ziglang ar "\$@"
WRAPPER
chmod +x "$tools/ar.tmp"
mv "$tools/ar.tmp" "$tools/ar"

export CC_aarch64_apple_darwin="$tools/cc"
export CXX_aarch64_apple_darwin="$tools/c++"
export AR_aarch64_apple_darwin="$tools/ar"
export ZIG_GLOBAL_CACHE_DIR="$tools/zig-cache"
export ZIG_LOCAL_CACHE_DIR="$tools/zig-cache"

set -x
cargo clippy --workspace --all-targets --target "$triple" \
    --features ltx-core/metal,ltx-pipelines/metal,ltx-coreml/metal,ltx-cli/metal \
    "$@" -- -D warnings
