#!/usr/bin/env bash
# Python benchmarks, release build: the listener (no handler, an on_publish
# returning PUBLISH_OK, the same as a coroutine, and amqtt with a plugin
# when it is installed in .venv) and the client publisher loop.
#
#   bash scripts/bench-python.sh [--messages N] [--publishers P]
#
# Extra arguments go to test/python/bench_listener.py. Figures vary with the
# machine's load: compare the ratios printed within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r test/requirements.txt
(cd myqtt-py && ../.venv/bin/maturin develop --release -q)

amqtt=()
if .venv/bin/python -c "import amqtt" 2>/dev/null; then
  amqtt=(--amqtt)
else
  echo "(amqtt is not installed in .venv: pip install amqtt to compare with it)"
fi

echo "== listener: publisher processes, no subscriber (what the listener takes in)"
.venv/bin/python test/python/bench_listener.py "${amqtt[@]}" "$@"
echo
echo "== listener: myqtt-bench publisher/subscriber pairs (delivered)"
cargo build --release --locked -q -p myqtt-bench
.venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --myqtt-bench target/release/myqtt-bench "$@"
echo
echo "== client publisher loop"
.venv/bin/python test/python/bench_client_publish.py
