"""README's "Your data, your model" block runs as written: each command of the block under
`<!-- own-data -->`, in a tmp dir, on a few bundled rows in the block's input format, with the tiny model.

Only what must change to run here is substituted (`SUBSTITUTIONS`, `GENERATE_EXTRA`, the port); any other
drift (a renamed option, a changed file name) makes a command fail and this test with it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fixtures_server import _free_port, stop_server, wait_until_healthy
from treasure.bundled import load_bundled

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- own-data -->"
N_ROWS = 40
# README's user-side values → what runs here: the tiny from-scratch model, two short steps
SUBSTITUTIONS = {"--model my-model": "--model tiny --config tiny_test --max-steps 2 --batch-size 4"}
GENERATE_EXTRA = ["--max-new-tokens", "16"]  # the tiny model writes noise: keep it short
CLI = [sys.executable, "-c", "import sys; sys.argv[0] = 'treasure'; from treasure.cli import main; main()"]


def readme_block() -> list[str]:
    """The commands of the bash block after MARKER (continuation lines joined, comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"README.md needs exactly one {MARKER}"
    found = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert found, f"no ```bash block after {MARKER}"
    joined = found.group(1).replace("\\\n", " ")
    return [shlex.join(shlex.split(line, comments=True)) for line in joined.splitlines() if line.strip()]


def write_chats(path: Path) -> None:
    """A few bundled rows as chat `messages` JSONL (the block's `--preset messages`)."""
    rows = [r for r in load_bundled()[0] if len(r["response"].split()) < 60][:N_ROWS]
    with path.open("w", encoding="utf-8") as out:
        for r in rows:
            turns = [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
            ]
            out.write(json.dumps({"messages": turns}) + "\n")


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"treasure {shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_readme_own_data_block_runs(tmp_path: Path) -> None:
    commands = readme_block()
    names = [c.split()[1] if c.startswith("treasure ") else c.split()[0] for c in commands]
    assert names == ["annotate", "build", "train", "generate", "serve", "curl"], commands
    annotate, build, train, generate, serve, curl = commands
    assert "my_chats.jsonl" in annotate and "--preset messages" in annotate
    write_chats(tmp_path / "my_chats.jsonl")

    run(shlex.split(annotate)[1:], tmp_path)
    for name in ("annotated.jsonl", "annotated.jsonl.stats.json", "annotated.jsonl.taxonomy.yaml"):
        assert (tmp_path / name).is_file(), name
    run(shlex.split(build)[1:], tmp_path)
    assert (tmp_path / "train_dir" / "build.json").is_file() and (tmp_path / "train_dir" / "train").is_dir()
    for old, new in SUBSTITUTIONS.items():
        assert old in train, f"README's train line lost {old!r}"
        train = train.replace(old, new)
    log = run(shlex.split(train)[1:], tmp_path)
    assert "trained" in log and (tmp_path / "model_dir" / "train.json").is_file()

    run([*shlex.split(generate)[1:], *GENERATE_EXTRA], tmp_path)
    given = dict(m.split("=", 1) for m in re.findall(r"--marker (\S+)", generate))
    rows = [
        json.loads(line) for line in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(rows) == 1 and set(rows[0]) == {"id", "prompt", "response", "markers", "markers_error"}
    assert rows[0]["markers"].items() >= given.items() and "<TEMPLATE>" not in rows[0]["response"]

    serve_args = shlex.split(serve.removesuffix("'&'").strip())[1:]
    port = str(_free_port())
    serve_args[serve_args.index("--port") + 1] = port
    assert serve.endswith("'&'") and ":8000/" in curl  # shlex.join quotes the `&`
    process = subprocess.Popen(
        [*CLI, *serve_args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}/health", 300, "treasure serve")
        words = shlex.split(curl)
        url = next(w for w in words if ":8000/" in w).replace(":8000/", f":{port}/")
        body = json.loads(words[words.index("-d") + 1])
        reply = httpx.post(url if "://" in url else f"http://{url}", json=body, timeout=120)
    finally:
        stop_server(process)
    assert reply.status_code == 200, reply.text
    treasure = reply.json()["treasure"]
    assert treasure["markers"].items() >= body["markers"].items() and treasure["mode"] == "controlling"
