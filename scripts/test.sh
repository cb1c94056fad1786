#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this; it is the
# README's second command). On a fresh Debian machine it installs what the
# tests need: mosquitto and mosquitto-clients (real peers for interop tests)
# and a Python virtualenv in .venv with pytest and paho-mqtt.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]} (Debian packages)"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]}) and rerun" >&2
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin"

step "Python virtualenv (.venv) with the test requirements"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r test/requirements.txt

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

step "conformance map is current"
python3 scripts/conformance_map.py --check

step "fuzz targets compile"
# The fuzz workspace follows myqtt-core's dependencies, so its lock file is not kept.
cargo check --manifest-path fuzz/Cargo.toml -q
if cargo +nightly --version >/dev/null 2>&1 && command -v cargo-fuzz >/dev/null 2>&1; then
  step "fuzzing each target for 20 s (nightly and cargo-fuzz are present)"
  for target in decode topic_filter; do
    (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time=20 -print_final_stats=0 2>&1 | tail -1)
  done
fi

step "Python extension (maturin develop into .venv)"
(cd myqtt-py && ../.venv/bin/maturin develop --release -q)

step "type stubs match the module (mypy.stubtest)"
.venv/bin/python -m mypy.stubtest myqtt --allowlist myqtt-py/stubtest-allowlist.txt

step "Python tests (pytest)"
cargo build --locked --release --examples -p myqtt-core
.venv/bin/python -m pytest -q test
