#!/usr/bin/env bash
# Python benchmarks, release build: the listener (no handler, an on_publish
# returning PUBLISH_OK, the same as a coroutine, and amqtt with a plugin
# when it is installed in .venv) and the client publisher loop.
#
#   bash scripts/bench-python.sh [--messages N] [--publishers P] [--qos Q] [--payload B]
#
# Without arguments: QoS 0, 64 B at 1, 4 and 16 publishers (the targets'
# configuration), then QoS 1 and 1 KiB payloads at 4. Extra arguments go to
# test/python/bench_listener.py instead. Figures vary with the machine's
# load (printed): compare the ratios within one run, and the listener's CPU
# time per message.
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
if [ $# -eq 0 ]; then
  # The targets' configuration (QoS 0, 64 B) at 1, 4 and 16 publishers,
  # then QoS 1 and 1 KiB payloads at 4.
  for p in 1 4 16; do
    .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --publishers "$p" --messages 100000
    echo
  done
  .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --publishers 4 --messages 100000 --qos 1
  echo
  .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --publishers 4 --messages 100000 --payload 1024
else
  .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" "$@"
fi
echo
echo "== listener: myqtt-bench publisher/subscriber pairs (delivered)"
cargo build --release --locked -q -p myqtt-bench
.venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --myqtt-bench target/release/myqtt-bench "$@"
echo
echo "== client publisher loop"
.venv/bin/python test/python/bench_client_publish.py
