"""Generation runs of an evaluation, cached on disk so an interrupted `evaluate` resumes.

Each run (a name, a model, prompts, a mode, markers, decoding options) appends one JSON line per answer to
`generations/<name>.jsonl` after every batch; a `<name>.key` file holds the hash of what produced it.
A rerun with the same key skips the finished lines; a changed key starts the run over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from treasure.backends import GenerationConfig, pick_backend
from treasure.errors import DataError
from treasure.generate import Generator
from treasure.io import atomic_write_text, iter_records


def model_fingerprint(model_dir: Path) -> str:
    """Short hash of a model dir: its config, train.json, taxonomy and the size + first MiB of weights."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.suffix in {".json", ".yaml", ".safetensors", ".bin"} and path.is_file():
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class GenerationRuns:
    """Loads each model once per backend and runs (cached) generations for the suites.

    With `backend="auto"` each run goes to vLLM where it is installed and the run's decoding options
    allow it, to transformers otherwise (`pick_backend`); a run's progress line names its backend.
    """

    def __init__(
        self,
        models: Mapping[str, Path],
        cache_dir: Path,
        config: GenerationConfig,
        backend: str = "transformers",
        progress: bool = True,
    ):
        self.models = dict(models)
        self.cache_dir = cache_dir
        self.config = config
        self.backend = backend
        self.progress = progress
        self.fingerprints = {name: model_fingerprint(path) for name, path in self.models.items()}
        self._generators: dict[tuple[str, str], Generator] = {}

    def backend_for(self, config: GenerationConfig | None = None) -> str:
        """The backend a run with `config` (default: the runs' own) goes to."""
        return pick_backend(self.backend, config or self.config)

    def generator(self, model: str, backend: str | None = None) -> Generator:
        """`model`'s generator on `backend` (default: the one a run with the runs' own options uses)."""
        backend = backend or self.backend_for()
        if (model, backend) not in self._generators:
            self._generators[model, backend] = Generator.from_model_dir(self.models[model], backend=backend)
        return self._generators[model, backend]

    def key(
        self,
        model: str,
        prompts: Sequence[str],
        mode: str,
        markers: Sequence[Mapping[str, Any] | None],
        strict: bool,
        config: GenerationConfig,
        backend: str,
    ) -> str:
        """Hash of what produces a run: the model's fingerprint, the prompts, mode, markers, strictness,
        every decoding option (guidance scale and length budget included) and the backend."""
        what = [self.fingerprints[model], list(prompts), mode, list(markers), strict, asdict(config)]
        what.append(backend)
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()

    def run(
        self,
        name: str,
        model: str,
        prompts: Sequence[str],
        mode: str = "conditioning",
        markers: Sequence[Mapping[str, Any] | None] | None = None,
        strict: bool = False,
        config: GenerationConfig | None = None,
    ) -> list[dict[str, Any]]:
        """Answers for `prompts` (dicts: response, markers, markers_error, n_tokens), resuming a cache.

        `config` replaces the runs' decoding options for this run (e.g. another guidance scale or a
        length budget); every field of it is part of the cache key."""
        per_prompt = list(markers) if markers is not None else [None] * len(prompts)
        base = config or self.config
        backend = self.backend_for(base)
        key = self.key(model, prompts, mode, per_prompt, strict, base, backend)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        out, key_file = self.cache_dir / f"{name}.jsonl", self.cache_dir / f"{name}.key"
        done = _read_finished(out) if key_file.is_file() and key_file.read_text() == key else []
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done))
        atomic_write_text(key_file, key)
        size = max(1, base.batch_size)
        with _progress(self.progress) as progress:
            task = progress.add_task(f"{name} ({backend})", total=len(prompts), completed=len(done))
            for start in range(len(done), len(prompts), size):
                chunk = slice(start, start + size)
                batch_config = replace(base, seed=base.seed + start // size)
                generations = self.generator(model, backend).generate(
                    list(prompts[chunk]), mode, per_prompt[chunk], strict=strict, config=batch_config
                )
                rows = [
                    {
                        "response": g.response,
                        "markers": g.markers,
                        "markers_error": g.markers_error,
                        "n_tokens": g.n_tokens,
                    }
                    for g in generations
                ]
                with out.open("a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
                done.extend(rows)
                progress.update(task, completed=len(done))
        return done


def _read_finished(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a cache file (a line cut by a crash is dropped)."""
    if not path.is_file():
        return []
    rows = []
    for _, row in iter_records(path):
        if isinstance(row, DataError):
            break
        rows.append(row)
    return rows


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )
