"""Make data/multilingual_instruct/*.jsonl.gz from the workplace's shared/data/multilingual_instruct/.

Rows and their order are kept as they are; the one change is `language`, an ISO 639-1 code upstream,
written as the taxonomy's language name. fr.jsonl (CC BY-NC) and extra/ (below 500 rows) are left out.
Run from the repo root: python data/multilingual_instruct/make_files.py ../shared/data/multilingual_instruct
"""

import gzip
import json
import sys
from pathlib import Path

NAMES = {
    "ar": "Arabic",
    "de": "German",
    "es": "Spanish",
    "hi": "Hindi",
    "ja": "Japanese",
    "ru": "Russian",
    "zh": "Chinese",
}


def main(source: Path, out: Path) -> None:
    for code, name in NAMES.items():
        rows = [json.loads(line) for line in (source / f"{code}.jsonl").read_text("utf-8").splitlines()]
        for row in rows:
            assert row["language"] == code, row
            row["language"] = name
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with gzip.GzipFile(out / f"{code}.jsonl.gz", "wb", mtime=0) as handle:
            handle.write(text.encode("utf-8"))
        print(code, len(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
