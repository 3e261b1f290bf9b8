#!/usr/bin/env bash
# Build the Debian package: the release binary, its man pages and shell completions (written
# by the binary itself from its clap definitions: `stunmap man`, `stunmap completions`), then
# `cargo deb --no-build` with the assets listed in Cargo.toml ([package.metadata.deb]).
# Needs cargo-deb (cargo install cargo-deb --locked). Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
out="$target/release"
cargo build --release --locked -p stunmap

rm -rf "$out/man" "$out/completions"
mkdir -p "$out/man" "$out/completions"
"$out/stunmap" man "$out/man"
gzip -9n "$out"/man/*.1
"$out/stunmap" completions bash >"$out/completions/stunmap.bash"
"$out/stunmap" completions zsh >"$out/completions/_stunmap"
"$out/stunmap" completions fish >"$out/completions/stunmap.fish"

cargo deb --no-build --locked -p stunmap "$@"
