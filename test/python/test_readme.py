"""The README opens with two commands; the first (the main job) must work.

The test reads the command from README.md, checks it is the demo example,
and runs the built example with the same arguments plus `--port 0 --once`
(a free port, and exit after the exchange) so it can run beside other tests.
"""

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```sh", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert commands[1] == "bash scripts/test.sh"
    assert (ROOT / ".ci" / "run").read_text().count("scripts/test.sh") == 1


def test_the_run_command_starts_a_listener_and_a_client_that_talk():
    words = shlex.split(readme_commands()[0])
    assert words[:6] == ["cargo", "run", "--release", "-p", "myqtt-core", "--example"], words
    example = words[6]
    extra = words[words.index("--") + 1 :] if "--" in words else []
    binary = ROOT / "target" / "release" / "examples" / example
    assert binary.exists(), f"build it first: cargo build --release --examples ({binary})"
    run = subprocess.run(
        [str(binary), *extra, "--port", "0", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "listening on 127.0.0.1:" in run.stdout
    for qos in (0, 1, 2):
        assert f"received myqtt/demo/qos{qos} (QoS {qos})" in run.stdout, run.stdout
    assert "all messages made the round trip" in run.stdout


def test_the_demo_store_keeps_the_retained_message_across_runs(tmp_path):
    binary = ROOT / "target" / "release" / "examples" / "demo"
    store = tmp_path / "store"
    outputs = []
    for _ in range(2):
        run = subprocess.run(
            [str(binary), "--storage", str(store), "--port", "0", "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert "[retained, from the store]" not in outputs[0]
    assert "myqtt/demo/welcome (QoS 1): retained: new subscribers get this [retained, from the store]" in outputs[1]
