"""Render README's "What it measured" block from a recorded demo run (see `treasure.demo_results`).

python scripts/demo_results.py docs/demo-run --write README.md   # rewrite the block
python scripts/demo_results.py docs/demo-run --check README.md   # exit 1 when README differs
"""

from treasure.demo_results import main

if __name__ == "__main__":
    raise SystemExit(main())
