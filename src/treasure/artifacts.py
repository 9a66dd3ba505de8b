"""Every file one stage writes and another reads: their names, loading (one error line naming a missing or
damaged file) and saving.

- `AnnotatedData`: what `treasure annotate` writes, read by `treasure build`: the rows, with
  `ANNOTATED.taxonomy.yaml`, `.stats.json` and `.rejects.jsonl` beside them.
- `TrainDir`: what `treasure build` writes, read by `treasure train`.
- `ModelDir`: what `treasure train` writes beside the HF weights, read by generate, serve and evaluate.

`BuildReport` (`build.json`), `TrainReport` (`train.json`) and `Stats` (`stats.json`) keep each file's JSON
as written, so it is saved back unchanged, and give typed access to the fields treasure reads. The table
in docs/architecture.md ("Files between the stages") lists the same files; tests/test_artifacts.py checks
the two against each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import datasets

from treasure import io
from treasure.errors import DataError, TreasureError
from treasure.taxonomy import Taxonomy

# ---------------------------------------------------------------- file names

TAXONOMY = "taxonomy.yaml"
STATS = "stats.json"
BUILD = "build.json"
TRAIN = "train.json"
REJECTS = "rejects.jsonl"
WORK = "work"  # annotate's resumable shards (a dir), removed after a successful run
SPLITS = ("train", "validation")
METRICS = "metrics.json"  # REPORT_DIR's: every suite's numbers
REPORT_HTML = "report.html"
GENERATIONS = "generations"  # cached answers per model (a dir)
JUDGE_CACHE = "judge-cache"  # the pairwise judge's replies (a dir)

# Every file of each place, as the docs' table names it (`ANNOTATED<name>`, `TRAIN_DIR/<name>`,
# `MODEL_DIR/<name>`; a trailing "/" is a dir). MODEL_DIR also holds the standard HF files.
ANNOTATED_FILES = (f".{TAXONOMY}", f".{STATS}", f".{REJECTS}", f".{WORK}/")
TRAIN_DIR_FILES = (*(f"{s}/" for s in SPLITS), *(f"{s}.jsonl" for s in SPLITS), BUILD, TAXONOMY, STATS)
MODEL_DIR_FILES = (TAXONOMY, STATS, BUILD, TRAIN)
REPORT_DIR_FILES = (METRICS, REPORT_HTML, f"{GENERATIONS}/", f"{JUDGE_CACHE}/")


def sidecar(data: str | Path, name: str) -> Path:
    """`ANNOTATED.<name>`: the file annotate writes beside its output (e.g. `rows.jsonl.stats.json`)."""
    data = Path(data)
    return data.with_name(f"{data.name}.{name}")


# ---------------------------------------------------------------- JSON files


def read_json(path: Path) -> Any:
    """Parse a JSON file written by a stage; a missing or damaged one raises `DataError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DataError(str(path), f"not valid JSON ({where}): {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DataError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(str(path), f"cannot read it ({exc.strerror or exc})") from None


JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false is not a number
        return bool in types
    return isinstance(value, types)


Fields = dict[str, tuple[type, ...]]


@dataclass(frozen=True)
class JsonReport:
    """A stage's JSON file: the parsed object as written, checked on load against `FIELDS`."""

    data: dict[str, Any]

    ENSURE_ASCII: ClassVar[bool] = False  # as each file has always been written
    # dotted key → allowed types; `REQUIRED` keys must be there, the others only have the type when present
    FIELDS: ClassVar[Fields] = {}
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read and check the file; one `DataError` line naming it and the key when it does not fit."""
        path = Path(path)
        data = read_json(path)
        if not isinstance(data, dict):
            found = JSON_NAMES.get(type(data), type(data).__name__)
            raise DataError(str(path), f"not a JSON object (found {found})")
        for key, types in cls.FIELDS.items():
            *parents, leaf = key.split(".")
            holder: Any = data
            for parent in parents:
                holder = holder.get(parent) if isinstance(holder, dict) else None
            if not isinstance(holder, dict) or leaf not in holder:
                if key in cls.REQUIRED:
                    raise DataError(str(path), f"missing key '{key}'")
                continue
            if not _has_type(holder[leaf], types):
                wanted = " or ".join(JSON_NAMES[t] for t in types)
                found = JSON_NAMES.get(type(holder[leaf]), type(holder[leaf]).__name__)
                raise DataError(str(path), f"'{key}' should be {wanted}, not {found}")
        return cls(data)

    def text(self) -> str:
        """The file's text: two-space indented JSON and a final newline."""
        return json.dumps(self.data, indent=2, ensure_ascii=self.ENSURE_ASCII) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the file atomically."""
        return io.atomic_write_text(path, self.text())


NUMBER = (int, float)
OPTIONAL_OBJECT = (dict, type(None))


@dataclass(frozen=True)
class Stats(JsonReport):
    """`stats.json` (annotate): `n_rows`, every marker's value counts and buckets, thresholds, timings.

    The shape is in docs/CONTRACTS.md; evaluate reads `markers` (long-tail buckets, length limits).
    A training set or model dir built from data without stats holds `{}`.
    """

    FIELDS: ClassVar[Fields] = {
        "n_rows": (int,),
        "rejected": (int,),
        "thresholds": (dict,),
        "markers": (dict,),
    }

    @property
    def n_rows(self) -> int | None:
        return self.data.get("n_rows")

    @property
    def rejected(self) -> int:
        """Input rows annotate could not read (0 when not recorded)."""
        return self.data.get("rejected", 0)

    @property
    def thresholds(self) -> dict[str, list[float]]:
        return self.data.get("thresholds", {})


@dataclass(frozen=True)
class BuildReport(JsonReport):
    """`build.json` (build): the config, the markers used, row counts, realised dropout, input hash,
    template overhead. Train copies it into MODEL_DIR, where generate reads `config.markers`."""

    FIELDS: ClassVar[Fields] = {
        "config": (dict,),
        "config.markers": (list, type(None)),
        "config.baseline": (bool,),
        "n_train": (int,),
        "n_validation": (int,),
        "realised": OPTIONAL_OBJECT,
        "template_overhead": (dict,),
    }
    REQUIRED = ("config", "n_train", "n_validation")

    @property
    def n_train(self) -> int:
        return self.data["n_train"]

    @property
    def n_validation(self) -> int:
        return self.data["n_validation"]

    @property
    def baseline(self) -> bool:
        """Built without markers (the ablation)."""
        return self.data["config"].get("baseline", False)

    @property
    def trained_markers(self) -> frozenset[str] | None:
        """The markers the user chose (`config.markers`); None when all were used."""
        names = self.data["config"].get("markers")
        return frozenset(names) if names else None

    @property
    def realised(self) -> dict[str, float | None] | None:
        """Realised `dataset_dropout` and `marker_dropout` (None for a baseline)."""
        return self.data.get("realised")

    @property
    def template_overhead(self) -> dict[str, dict[str, float]]:
        """Per tokenizer: `median`, `p95`, `mean_template_tokens`, `mean_row_tokens` ({}: not measured)."""
        return self.data.get("template_overhead") or {}


@dataclass(frozen=True)
class TrainReport(JsonReport):
    """`train.json` (train): config, seed, `marked`, data hash, losses, long rows, steps, tokens/s,
    versions. Generate reads `marked` (a baseline model runs in conditioning mode only)."""

    ENSURE_ASCII = True
    FIELDS: ClassVar[Fields] = {
        "marked": (bool,),
        "steps": (int,),
        "n_train_rows": (int,),
        "losses": (dict,),
        "train_tokens_per_s": NUMBER,
    }
    REQUIRED = ("marked",)

    @property
    def marked(self) -> bool:
        return self.data["marked"]

    @property
    def steps(self) -> int | None:
        return self.data.get("steps")

    @property
    def n_train_rows(self) -> int | None:
        return self.data.get("n_train_rows")

    @property
    def losses(self) -> dict[str, float | None]:
        """`initial_eval`, `final_train`, `final_eval` (each None or absent when not measured)."""
        return self.data.get("losses", {})

    @property
    def train_tokens_per_s(self) -> float | None:
        return self.data.get("train_tokens_per_s")


def _stats(path: Path | None) -> Stats:
    return Stats.load(path) if path is not None and path.is_file() else Stats({})


# ---------------------------------------------------------------- annotate → build


@dataclass(frozen=True)
class AnnotatedData:
    """Annotated rows (`.jsonl`, `.jsonl.gz`, `.parquet` or an HF dir) and the files annotate writes beside
    them: the effective taxonomy (the default one when there is none) and the stats (`{}` when none)."""

    path: Path
    taxonomy: Taxonomy
    stats: Stats

    @property
    def taxonomy_file(self) -> Path:
        return sidecar(self.path, TAXONOMY)

    @property
    def stats_file(self) -> Path:
        return sidecar(self.path, STATS)

    @property
    def rejects_file(self) -> Path:
        """`ANNOTATED.rejects.jsonl`: the input rows annotate could not read (only when there were any)."""
        return sidecar(self.path, REJECTS)

    @property
    def work_dir(self) -> Path:
        """`ANNOTATED.work/`: finished shards of a local run, for `--resume`."""
        return sidecar(self.path, WORK)

    @classmethod
    def load(cls, path: str | Path) -> AnnotatedData:
        """The data with its taxonomy and stats (`x.jsonl.taxonomy.yaml`, else `x.taxonomy.yaml` or
        `dir/taxonomy.yaml`; the default taxonomy and `{}` stats when absent)."""
        path = Path(path)
        if not path.exists():
            raise TreasureError(f"{path}: annotated data not found")
        return cls(path, Taxonomy.load(_beside(path, TAXONOMY)), _stats(_beside(path, STATS)))

    def rows(self) -> datasets.Dataset:
        """The rows, read with the data's taxonomy."""
        return io.load(self.path, taxonomy=self.taxonomy).dataset

    def save(self, rows: datasets.Dataset | None = None) -> AnnotatedData:
        """Write the rows (when given), then the taxonomy and stats beside them."""
        if rows is not None:
            io.save(rows, self.path)
        self.taxonomy.save(self.taxonomy_file)
        self.stats.save(self.stats_file)
        return self


def _beside(path: Path, name: str) -> Path | None:
    """The first existing of `x.jsonl.<name>`, `x.<name>` and (for a dir) `dir/<name>`."""
    candidates = [sidecar(path, name), path.with_suffix(f".{name}")]
    if path.is_dir():
        candidates.append(path / name)
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------- build → train


@dataclass(frozen=True)
class TrainDir:
    """TRAIN_DIR: `train/`, `validation/` (HF dataset dirs of chat `messages`), the same rows as JSONL,
    `build.json`, and the taxonomy and stats of the annotated data."""

    path: Path
    build_report: BuildReport
    taxonomy: Taxonomy
    stats: Stats

    @classmethod
    def load(cls, path: str | Path) -> TrainDir:
        """Check the files are there and read the small ones (the splits are read by `split`)."""
        path = Path(path)
        for name in (*SPLITS, BUILD, TAXONOMY):
            if not (path / name).exists():
                raise TreasureError(f"{path}: not a training set (no {name}); make one with `treasure build`")
        return cls(path, BuildReport.load(path / BUILD), Taxonomy.load(path / TAXONOMY), _stats(path / STATS))

    def split(self, name: str) -> datasets.Dataset:
        """The `train` or `validation` rows (a damaged dir raises `DataError` naming it)."""
        return io.load_from_disk(self.path / name)

    def jsonl(self, name: str) -> Path:
        return self.path / f"{name}.jsonl"

    def data_sha256(self) -> str:
        """sha256 of the JSONL splits (or of the HF dirs' arrow files when the JSONL is missing)."""
        files = [self.jsonl(s) for s in SPLITS]
        if not all(f.is_file() for f in files):
            files = sorted(self.path.glob("*/*.arrow"))
        digest = hashlib.sha256()
        for file in files:
            with open(file, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def save(self, train: datasets.Dataset, validation: datasets.Dataset) -> TrainDir:
        """Write the splits (HF dirs and JSONL), taxonomy, stats and build.json into `path`."""
        for name, rows in zip(SPLITS, (train, validation), strict=True):
            rows.save_to_disk(str(self.path / name))
            io.write_jsonl(list(rows), self.jsonl(name))
        self.taxonomy.save(self.path / TAXONOMY)
        self.stats.save(self.path / STATS)
        self.build_report.save(self.path / BUILD)
        return self


# ---------------------------------------------------------------- train → generate, serve, evaluate


@dataclass(frozen=True)
class ModelDir:
    """MODEL_DIR: a standard HF model dir plus treasure's files. Each may be absent (a registry base model
    has none): no taxonomy → callers use the default one, no stats → `{}`."""

    path: Path
    taxonomy: Taxonomy | None = None
    stats: Stats = field(default_factory=lambda: Stats({}))
    build_report: BuildReport | None = None
    train_report: TrainReport | None = None

    @classmethod
    def load(cls, path: str | Path) -> ModelDir:
        """Read every treasure file there is; a damaged one raises one error line naming it."""
        path = Path(path)
        if not path.is_dir():
            raise TreasureError(f"{path}: model dir not found")

        def present(name: str) -> Path | None:
            return path / name if (path / name).is_file() else None

        taxonomy_file, build_file, train_file = present(TAXONOMY), present(BUILD), present(TRAIN)
        return cls(
            path,
            taxonomy=Taxonomy.load(taxonomy_file) if taxonomy_file else None,
            stats=_stats(path / STATS),
            build_report=BuildReport.load(build_file) if build_file else None,
            train_report=TrainReport.load(train_file) if train_file else None,
        )

    def save(self) -> ModelDir:
        """Write treasure's files beside the weights (stats always; the others when set)."""
        if self.taxonomy is not None:
            self.taxonomy.save(self.path / TAXONOMY)
        self.stats.save(self.path / STATS)
        if self.build_report is not None:
            self.build_report.save(self.path / BUILD)
        if self.train_report is not None:
            self.train_report.save(self.path / TRAIN)
        return self
