#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust tests, docs. The README's
# second command; .ci/run calls it. Installs what the tests need on a fresh
# Debian machine (it is root on CI; elsewhere it asks for nothing it lacks).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "benches compile"
cargo bench --workspace --no-run --locked
