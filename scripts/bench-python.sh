#!/usr/bin/env bash
# Python benchmarks, release build: the listener (no handler, an on_publish
# returning PUBLISH_OK, the same as a coroutine, and amqtt with a plugin
# when it is installed in .venv) and the client publisher loop.
#
#   bash scripts/bench-python.sh [--load raw|conn] [--rounds R] [--messages N]
#                                [--publishers P] [--qos Q] [--payload B]
#
# Without arguments: the target's configuration (QoS 0, 64 B) under the
# raw load (pre-encoded packets written from one process on its own core,
# the listener pinned to the other: the listener is the bottleneck), 3
# interleaved rounds at 4 connections and 1 at 1 and 16; then the older
# load (myqtt.Conn publisher processes) at QoS 0 64 B, QoS 1 and 1 KiB at
# 4 publishers. Extra arguments go to test/python/bench_listener.py
# instead. Figures vary with the machine's load (printed): compare the
# ratios within one run, and the listener's CPU time per message.
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

echo "== listener, no subscriber (what the listener takes in): the raw load, then myqtt.Conn publishers"
if [ $# -eq 0 ]; then
  # The target's configuration (QoS 0, 64 B), raw load, listener pinned.
  .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --publishers 4 --rounds 3
  echo
  for p in 1 16; do
    .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --publishers "$p" --rounds 1 \
      --messages $((2000000 / p))
    echo
  done
  # myqtt.Conn publisher processes: QoS 0, QoS 1 and 1 KiB payloads.
  for extra in "" "--qos 1" "--payload 1024"; do
    # shellcheck disable=SC2086
    .venv/bin/python test/python/bench_listener.py "${amqtt[@]}" --load conn --publishers 4 \
      --messages 100000 $extra
    echo
  done
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
