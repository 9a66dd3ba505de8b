"""`make demo`: the whole loop on the embedded default (bundled real data, a real pretrained model).

prepare SmolLM2-135M-Instruct → annotate → build (marked + baseline) → train both → evaluate → show
answers per mode. `--recipe tiny` runs the same loop with the tiny from-scratch model instead.
Each stage writes under `runs/demo/<stage>/` and drops a `.done` file (its seconds and summary) when it
finishes, so a second run reuses finished stages and an interrupted run resumes at the first unfinished one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
from rich.console import Console
from rich.table import Table
from rich.text import Text

from treasure import io, models
from treasure.artifacts import REPORT_HTML
from treasure.bundled import load_bundled
from treasure.demo_results import CACHED, TIMINGS
from treasure.errors import TreasureError
from treasure.knobs import knob
from treasure.taxonomy import Taxonomy, with_thresholds

DONE = ".done"
SHOWCASE_PROMPTS = (
    "Give three tips for staying healthy.",
    "What is the capital of France?",
    "Write a short poem about the sea.",
)


@dataclass(frozen=True)
class DemoRecipe:
    """What the demo trains on and how much it evaluates; `RECIPES` holds the shipped ones."""

    model: str
    train_recipe: str
    markers: tuple[str, ...]
    # The paper drops markers at 0.5 / 0.5; a model with minutes of CPU training learns to follow prompt
    # markers only when it sees them often, so the demo shows them more often.
    dataset_dropout: float
    marker_dropout: float
    max_prompt_words: int
    max_response_words: int
    english_rows: int | None = None  # rows kept after the length filter (shuffled with the seed); None: all
    # Response-length bands (words) the English rows are drawn from, equally many from each: gaps between
    # them put the quantile length buckets far apart, which a model with minutes of training can learn.
    response_bands: tuple[tuple[int, int], ...] = ()
    # Length-contrast rows: this many more rows of the longest band, each also cut after whole sentences at
    # up to `ladder_rungs` points spread over its length (`length_ladder`), so one prompt appears with many
    # answer lengths and only the length markers tell them apart. Natural data hardly has this (a prompt
    # mostly fixes its answer's length); three bands alone taught three clusters, not a number
    # (docs/smollm2-demo-experiments.md no. 7).
    contrast_rows: int = 0
    ladder_rungs: int = 4
    ladder_min_words: int = 5
    rows_per_language: int = 0  # rows of each bundled non-English language (0: English only)
    max_multilingual_chars: int = 600  # prompt + response characters of a non-English row
    # Cross-lingual rows (`treasure.crosslingual`): this many parallel XQuAD items, each an English prompt
    # answered once per language below, so only the `language` marker tells the answers apart.
    crosslingual_items: int = 0
    crosslingual_languages: tuple[str, ...] = ("English", "Spanish", "German")
    # --- evaluation only (changing these redoes the evaluate stage, not training; see `DemoConfig.key`)
    eval_prompts: int = 100
    n_adherence_prompts: int = 30
    adherence_modes: tuple[str, ...] = ("controlling", "strict")
    adherence_languages: tuple[str, ...] = ()
    max_new_tokens: int = 200
    batch_size: int = 16
    # A penalty on repeated tokens (1.0: off), the same for every model and row. 1.15 stops the loops of
    # greedy answers but also penalises the end-of-turn token, which the chat template puts in every prompt,
    # so all answers grow (docs/smollm2-demo-experiments.md no. 15): off in the smollm2 recipe.
    repetition_penalty: float = 1.0
    showcase_languages: tuple[str, ...] = ()
    guidance_scales: tuple[float, ...] = ()  # marker guidance G of the extra evaluation rows
    request_languages: tuple[str, ...] = ()  # the paper's language protocol (request in the prompt)


EVAL_FIELDS = frozenset(
    (
        "eval_prompts",
        "n_adherence_prompts",
        "adherence_modes",
        "adherence_languages",
        "max_new_tokens",
        "batch_size",
        "repetition_penalty",
        "showcase_languages",
        "guidance_scales",
        "request_languages",
    )
)


RECIPES: dict[str, DemoRecipe] = {
    "smollm2": DemoRecipe(
        model="smollm2-135m",
        train_recipe="smollm2_demo",
        markers=("language", "length_bucket", "length_tokens", "task"),
        dataset_dropout=0.3,
        marker_dropout=0.3,
        max_prompt_words=40,
        max_response_words=110,
        english_rows=300,
        response_bands=((1, 25), (35, 60), (75, 110)),
        contrast_rows=200,
        crosslingual_items=250,
        eval_prompts=100,
        n_adherence_prompts=20,
        adherence_modes=("controlling",),
        adherence_languages=("Spanish", "German"),
        max_new_tokens=160,
        batch_size=32,
        showcase_languages=("Spanish", "German"),
        guidance_scales=(1.5,),
        request_languages=("Spanish", "German"),
    ),
    "tiny": DemoRecipe(
        model="tiny",
        train_recipe="tiny_demo",
        markers=(
            "code_type",
            "domain",
            "format",
            "language",
            "length_bucket",
            "length_tokens",
            "quality_bucket",
            "source",
            "task",
        ),
        dataset_dropout=0.1,
        marker_dropout=0.2,
        max_prompt_words=60,
        max_response_words=150,
    ),
}


@dataclass
class DemoConfig:
    """Where the demo writes, its seed and recipe (`smollm2` or `tiny`), and the stage times it measured."""

    out_dir: Path | None = field(
        default=None,
        metadata=knob(
            "Where every stage writes (cached); default runs/demo, or runs/demo-RECIPE.", "--output", "-o"
        ),
    )
    seed: int = field(default=0, metadata=knob("Seed for every random step."))
    recipe: str = field(
        default="smollm2",
        metadata=knob(
            f"Demo recipe: {', '.join(RECIPES)} (smollm2: SmolLM2-135M-Instruct, all weights; tiny: scratch)."
        ),
    )
    n_prompts: int | None = field(
        default=None, metadata=knob("Prompts per evaluation suite (default: the recipe's).")
    )
    suites: tuple[str, ...] = field(
        default=(
            "length-instruct",
            "win-rate",
            "adherence",
            "language-request",
            "marker-prediction",
            "long-tail",
        ),
        metadata=knob("Evaluation suites the demo runs (comma list)."),
    )
    timings: dict[str, float] = field(default_factory=dict)  # measured stage times (not an option)
    cached: list[str] = field(default_factory=list)  # stages taken from the cache (timed when they ran)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise TreasureError(f"unknown demo recipe {self.recipe!r}; valid: {', '.join(RECIPES)}")
        if self.out_dir is None:
            self.out_dir = Path("runs/demo" if self.recipe == "smollm2" else f"runs/demo-{self.recipe}")
        self.out_dir = Path(self.out_dir)

    @property
    def spec(self) -> DemoRecipe:
        return RECIPES[self.recipe]

    def key(self, stage: str = "evaluate") -> str:
        """Hash of everything that shapes a stage's outputs: a cached stage with another key is redone.

        The evaluate stage hashes the whole recipe, the train recipe file, seed, prompts and suites; every
        earlier stage leaves the evaluation-only fields (`EVAL_FIELDS`, prompts, suites) out, so a change to
        the evaluation does not retrain the models.
        """
        from treasure.tiny import CONFIG_DIR

        recipe_file = CONFIG_DIR / f"{self.spec.train_recipe}.yaml"
        recipe_text = recipe_file.read_text(encoding="utf-8") if recipe_file.is_file() else ""
        spec = asdict(self.spec)
        parts: list[Any] = [spec, recipe_text, self.seed, self.n_prompts, self.suites]
        if stage != "evaluate":
            parts = [{k: v for k, v in spec.items() if k not in EVAL_FIELDS}, recipe_text, self.seed]
        blob = json.dumps(parts, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_stage(
    name: str, out: Path, work: Callable[[], dict[str, Any] | None], config: DemoConfig, console: Console
) -> dict[str, Any]:
    """Run `work` unless `out/.done` exists with this config's key; record seconds and summary in `.done`.

    A `.done` written under another recipe or seed is stale: the stage dir is cleared and the stage redone.
    """
    done = out / DONE
    key = config.key(name)
    if done.is_file():
        record = json.loads(done.read_text(encoding="utf-8"))
        if record.get("key") == key:
            console.print(f"[dim]✓ {name}: cached ({record['seconds']:.0f} s when it ran) → {out}[/]")
            config.timings[name] = record["seconds"]
            config.cached.append(name)
            return record
        console.print(f"[yellow]{name}: {out} was made with another recipe; redoing it[/]")
        shutil.rmtree(out)
    console.rule(f"[bold]{name}")
    began = time.perf_counter()
    summary = work() or {}
    seconds = time.perf_counter() - began
    record = {"seconds": round(seconds, 1), "key": key, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    io.atomic_write_text(done, json.dumps(record, indent=2, default=str) + "\n")
    config.timings[name] = seconds
    console.print(f"[green]✓ {name}[/] in {seconds:.0f} s → {out}")
    return record


def select_rows(spec: DemoRecipe, seed: int) -> tuple[datasets.Dataset, int, list[Any]]:
    """The demo's training rows: short English rows (capped), plus short rows of each other language."""
    english, rejected = load_bundled(groups=("train",))
    total = len(english)
    english = english.filter(
        lambda row: (
            len(row["prompt"].split()) <= spec.max_prompt_words
            and len(row["response"].split()) <= spec.max_response_words
        )
    )
    english = english.shuffle(seed=seed)
    parts = []
    for index, (low, high) in enumerate(spec.response_bands):
        band = english.filter(lambda row, lo=low, hi=high: lo <= len(row["response"].split()) <= hi)
        share = min((spec.english_rows or len(band)) // len(spec.response_bands), len(band))
        parts.append(band.select(range(share)))
        if spec.contrast_rows and index == len(spec.response_bands) - 1:  # the longest band, rows not taken
            source = band.select(range(share, min(share + spec.contrast_rows, len(band))))
            parts.append(length_ladder(source, spec.ladder_rungs, spec.ladder_min_words))
    if not spec.response_bands:
        parts.append(english.select(range(min(spec.english_rows or len(english), len(english)))))
    if spec.crosslingual_items:
        from treasure.crosslingual import CrossLingualConfig, crosslingual_rows

        rows = crosslingual_rows(
            CrossLingualConfig(
                n_items=spec.crosslingual_items, languages=spec.crosslingual_languages, seed=seed
            )
        )
        file = "multilingual_instruct/xquad_parallel.jsonl.gz"
        features = english.features.copy()
        features["language"] = datasets.Value("string")
        rows = [{c: {**row, "file": file}.get(c) for c in features} for row in rows]
        parts.append(datasets.Dataset.from_list(rows, features=features))
        total += len(rows)
    if spec.rows_per_language:
        other, more_rejected = load_bundled(groups=("multilingual",))
        total += len(other)
        rejected += more_rejected
        other = other.filter(
            lambda row: len(row["prompt"]) + len(row["response"]) <= spec.max_multilingual_chars
        ).shuffle(seed=seed)
        for language in sorted(set(other["language"])):
            rows = other.filter(lambda row, language=language: row["language"] == language)
            parts.append(rows.select(range(min(spec.rows_per_language, len(rows)))))
    if any("language" in part.column_names for part in parts):  # English rows: detected at annotation
        parts = [
            part if "language" in part.column_names else part.add_column("language", [None] * len(part))
            for part in parts
        ]
    ds = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    return ds, total, rejected


SENTENCE_END = re.compile(r"[.!?]$")
LIST_LABEL = re.compile(r"(^|\s)(\d+|[A-Za-z])[.)]$")  # "1." or "a)": spaCy makes them sentences
CUT = "#cut"  # a ladder copy's id: the full row's id, CUT, the copy's number


def ladder_stem(row_id: str) -> tuple[str, str]:
    """(the ladder's id, "cut<k>") for a ladder copy's id, (the id, "") for any other row."""
    stem, mark, number = row_id.partition(CUT)
    return stem, f"cut{number}" if mark else ""


def length_ladder(rows: datasets.Dataset, rungs: int, min_words: int) -> datasets.Dataset:
    """Each row, plus up to `rungs` copies cut after whole sentences (spaCy sentencizer), spread evenly
    over the row's clean cuts (ending a sentence, not on a list label or a colon, at least `min_words`
    words); ids of copies get `#cut<k>`. One prompt is so seen with many answer lengths, and only the
    length markers (`length_tokens`, `length_bucket`) tell them apart. Rows with fewer than two clean cuts
    are left out."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    kept: list[dict[str, Any]] = []
    for row in rows:
        sentences = [s.text_with_ws for s in nlp(row["response"]).sents]
        prefixes = ("".join(sentences[:end]).strip() for end in range(1, len(sentences)))
        cuts = [
            text
            for text in prefixes
            if len(text.split()) >= min_words and SENTENCE_END.search(text) and not LIST_LABEL.search(text)
        ]
        if len(cuts) < 2:
            continue
        if len(cuts) > rungs:
            cuts = [cuts[round(i * (len(cuts) - 1) / (rungs - 1))] for i in range(rungs)]
        copies = [{**row, "id": f"{row['id']}{CUT}{k}", "response": cut} for k, cut in enumerate(cuts)]
        kept += [row, *copies]
    return datasets.Dataset.from_list(kept, features=rows.features)


def data_summary(console: Console, out: Path, config: DemoConfig) -> dict[str, Any]:
    """Write the demo's training rows to one JSONL and print rows per file/source and field coverage.

    Only short rows are kept (`max_prompt_words`, `max_response_words`): the CPU model then sees whole
    examples (answer and end-of-turn token) within its window and its time budget.
    """
    spec = config.spec
    ds, total, rejected = select_rows(spec, config.seed)
    console.print(
        f"kept {len(ds)} of {total} bundled rows (prompt ≤ {spec.max_prompt_words} words, "
        f"response ≤ {spec.max_response_words} words"
        + (f"; {spec.rows_per_language} rows per other language" if spec.rows_per_language else "")
        + (
            f"; {spec.crosslingual_items} cross-lingual XQuAD items × {len(spec.crosslingual_languages)} "
            f"answer languages ({', '.join(spec.crosslingual_languages)})"
            if spec.crosslingual_items
            else ""
        )
        + ")"
    )
    io.save(ds.remove_columns(["file"]), out / "bundled.jsonl")
    by_file = Counter(zip(ds["file"], ds["source"], strict=True))
    table = Table(title=f"training data: {len(ds)} rows")
    for column in ("file", "source", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for (file, source), count in sorted(by_file.items()):
        table.add_row(file, source, str(count))
    console.print(table)
    coverage = Table(title="field coverage")
    for column in ("field", "rows with a value", "share"):
        coverage.add_column(column)
    for name in ds.column_names:
        filled = sum(v is not None and v != "" for v in ds[name])
        coverage.add_row(name, str(filled), f"{filled / len(ds):.0%}")
    console.print(coverage)
    for error in rejected:
        console.print(f"[yellow]skipped[/] {error}")
    return {"rows": len(ds), "bundled_rows": total, "skipped": len(rejected)}


def annotate_stage(data_file: Path, out: Path, console: Console) -> dict[str, Any]:
    """Annotate with the embedded annotators and print the distribution.

    `length_bucket` thresholds are the tertiles of the English banded rows' `length_tokens`, so they fall
    in the gaps between the response bands. Tertiles of all rows would not: the one-sentence cross-lingual
    answers (median 24 words) filled the `medium` bucket and pulled `long` down to 40 words (measured,
    docs/smollm2-demo-experiments.md no. 7).
    """
    from treasure.annotate import AnnotateConfig, AnnotateFileConfig, annotate_file

    cuts = banded_thresholds(data_file)
    console.print(f"length_bucket thresholds (tertiles of the English banded rows): {cuts} tokens")
    taxonomy = with_thresholds(Taxonomy.default(), "length_bucket", cuts)
    annotate = AnnotateConfig(taxonomy=taxonomy, length_buckets="taxonomy", num_proc=2, progress=True)
    config = AnnotateFileConfig(annotate=annotate, overwrite=True)  # a stage is redone whole
    stats = annotate_file(data_file, out / "rows.jsonl", config).stats
    console.print(marker_table(stats.data))
    return {"rows": stats.n_rows, "thresholds": stats.thresholds}


def banded_thresholds(data_file: Path) -> tuple[int, ...]:
    """Tertile cut points of `length_tokens` (the annotator's count) over the English rows drawn equally
    from the response bands: rows with a given language and the length ladders (`length_ladder`: a
    long row and its cuts, spread over every length) are left out."""
    from treasure.annotate.buckets import quantile_thresholds
    from treasure.annotate.rules import LengthCounter

    rows = [row for row in io.read_records(data_file) if row.get("language") is None]
    stems = [ladder_stem(row["id"]) for row in rows]
    ladders = {stem for stem, cut in stems if cut}
    counter = LengthCounter()
    lengths = [
        counter.count(row["response"], "English")[0]
        for row, (stem, _) in zip(rows, stems, strict=True)
        if stem not in ladders
    ]
    return quantile_thresholds(lengths, 3)


def marker_table(stats: dict[str, Any], top: int = 6) -> Table:
    """Marker value distribution with head/torso/tail, the most frequent values of each marker."""
    table = Table(title=f"marker distribution ({stats.get('n_rows')} rows; head ≥ 5%, tail < 1%)")
    for column in ("marker", "value", "rows", "share", "bucket"):
        table.add_column(column, justify="right" if column in ("rows", "share") else "left")
    for name, info in stats.get("markers", {}).items():
        values = info.get("values")
        if not values:
            summary = info.get("summary") or {}
            text = ", ".join(f"{k} {v:g}" for k, v in summary.items() if isinstance(v, int | float))
            table.add_row(name, text, str(info.get("n_labelled", "")), "", "")
            continue
        ranked = sorted(values.items(), key=lambda item: -item[1]["count"])
        for index, (value, cell) in enumerate(ranked[:top]):
            colour = {"head": "green", "torso": "yellow", "tail": "red"}.get(cell["bucket"], "white")
            table.add_row(
                name if index == 0 else "",
                value,
                str(cell["count"]),
                f"{cell['share']:.1%}",
                f"[{colour}]{cell['bucket']}[/]",
            )
        if len(ranked) > top:
            table.add_row("", f"… {len(ranked) - top} more", "", "", "")
    return table


def build_stage(annotated: Path, out: Path, baseline: bool, config: DemoConfig) -> dict[str, Any]:
    """Build the marked or baseline training set."""
    from treasure.build import BuildConfig, build

    spec = config.spec
    report = build(
        annotated,
        out,
        BuildConfig(
            dataset_dropout=spec.dataset_dropout,
            marker_dropout=spec.marker_dropout,
            markers=spec.markers,
            baseline=baseline,
            seed=config.seed,
            tokenizer=None if baseline else models.resolve(spec.model),  # "tiny" stays "tiny"
        ),
        overwrite=True,  # a stage is redone whole
    ).build_report
    return {k: report.data[k] for k in ("n_train", "realised", "template_overhead") if k in report.data}


def train_stage(train_dir: Path, out: Path, recipe: str, seed: int) -> dict[str, Any]:
    """Train one model with the recipe (resuming an interrupted run from its last checkpoint)."""
    from treasure.train import TrainConfig, last_checkpoint, train

    resume = last_checkpoint(out) is not None
    config = TrainConfig.from_file(
        recipe, train_dir=train_dir, output_dir=out, seed=seed, resume=resume, overwrite=True
    )
    report = train(config).train_report
    assert report is not None  # train always writes it
    return {
        "losses": report.losses,
        "rows": report.n_train_rows,
        "steps": report.steps,
        "tokens_per_s": report.train_tokens_per_s,
    }


def eval_config(config: DemoConfig) -> Any:
    """The `EvalConfig` of the demo's evaluate stage."""
    from treasure.backends import GenerationConfig
    from treasure.evaluate import EvalConfig

    spec = config.spec
    adherence: dict[str, tuple[str, ...]] = {"length_bucket": ("concise", "medium", "long")}
    if spec.adherence_languages:
        adherence["language"] = spec.adherence_languages
    return EvalConfig(
        model_dir=config.out_dir / "model-marked",
        baseline_dir=config.out_dir / "model-baseline",
        suites=config.suites,
        out_dir=config.out_dir / "report",
        n_prompts=config.n_prompts or spec.eval_prompts,
        n_adherence_prompts=spec.n_adherence_prompts,
        adherence_markers=adherence,
        adherence_modes=spec.adherence_modes,
        guidance_scales=spec.guidance_scales,
        request_languages=spec.request_languages,
        seed=config.seed,
        judge="reward-model",  # type: ignore[arg-type]
        backend="auto",
        generation=GenerationConfig(
            max_new_tokens=spec.max_new_tokens,
            temperature=0.0,
            repetition_penalty=spec.repetition_penalty,
            seed=config.seed,
            batch_size=spec.batch_size,
        ),
    )


def evaluate_stage(config: DemoConfig, console: Console) -> dict[str, Any]:
    """Evaluate the marked model against the baseline; print the paper-style and adherence tables.

    Generation runs on vLLM where it is installed (measured ×3 the transformers backend on SmolLM2 here),
    on transformers for the guided rows and where vLLM is absent (`backend="auto"`)."""
    from treasure.backends import vllm_installed
    from treasure.evaluate import evaluate, paper_table

    console.print(
        "generation engine: vLLM for every run but the guided ones (transformers: vLLM has no guidance)"
        if vllm_installed()
        else "generation engine: transformers (vLLM is not installed here)"
    )
    metrics = evaluate(eval_config(config))
    console.print(paper_table(metrics))
    console.print(adherence_table(metrics))
    return {"report": str(config.out_dir / "report" / REPORT_HTML)}


def adherence_table(metrics: dict[str, Any]) -> Table:
    """Per (marker, value): how often the answer has the value asked for, per mode."""
    suite = metrics.get("suites", {}).get("adherence") or {}
    modes = suite.get("modes", [])
    table = Table(title="Marker adherence (answer re-annotated; conditioning = no marker given, base rate)")
    table.add_column("marker")
    table.add_column("value")
    for mode in modes:
        table.add_column(mode, justify="right")
    rates: dict[tuple[str, str], dict[str, str]] = {}
    for cell in suite.get("cells", []):
        readable = f" ({cell['readable_rate']:.0%} readable)" if "readable_rate" in cell else ""
        rates.setdefault((cell["marker"], cell["value"]), {})[cell["mode"]] = (
            f"{cell['rate']:.0%}{readable} of {cell['n']}"
        )
    for (marker, value), by_mode in rates.items():
        table.add_row(marker, value, *(by_mode.get(mode, "") for mode in modes))
    return table


def showcase(config: DemoConfig, console: Console) -> None:
    """Example prompts: the marked model's answer per mode, beside the baseline's."""
    from treasure.backends import GenerationConfig
    from treasure.generate import Generator

    spec = config.spec
    marked = Generator.from_model_dir(config.out_dir / "model-marked")
    options = GenerationConfig(
        max_new_tokens=spec.max_new_tokens,
        temperature=0.0,
        repetition_penalty=spec.repetition_penalty,
        seed=config.seed,
    )
    prompts = list(SHOWCASE_PROMPTS)
    limited = [f"{p} Answer in 20 words or less." for p in prompts]
    runs = {
        "conditioning": marked.generate(prompts, "conditioning", config=options),
        "controlling length_bucket=concise": marked.generate(
            prompts, "controlling", {"length_bucket": "concise"}, config=options
        ),
        "controlling length_bucket=long": marked.generate(
            prompts, "controlling", {"length_bucket": "long"}, config=options
        ),
        "fixed (“Answer in 20 words or less.” → length_tokens=20)": marked.generate(
            limited, "fixed", config=options
        ),
        "fixed +budget (cut at the last sentence end within 20 words)": marked.generate(
            limited, "fixed", config=replace(options, length_budget=True)
        ),
    }
    for scale in spec.guidance_scales:
        runs[f"controlling length_bucket=concise, guidance G={scale:g}"] = marked.generate(
            prompts, "controlling", {"length_bucket": "concise"}, config=replace(options, guidance=scale)
        )
    for language in spec.showcase_languages:
        runs[f"controlling language={language}"] = marked.generate(
            prompts, "controlling", {"language": language}, config=options
        )
    del marked
    baseline = Generator.from_model_dir(config.out_dir / "model-baseline")
    runs["baseline model (no markers)"] = baseline.generate(prompts, config=options)
    for index, prompt in enumerate(prompts):
        table = Table(title=f"prompt: {prompt}", show_lines=True)
        table.add_column("mode", style="bold")
        table.add_column("markers (model's or given)")
        table.add_column("answer")
        for mode, generations in runs.items():
            g = generations[index]
            markers = ", ".join(f"{k}={v}" for k, v in sorted(g.markers.items()))
            table.add_row(mode, markers, Text(g.response.strip()[:500]))
        console.print(table)


def model_stage(config: DemoConfig, console: Console) -> None:
    """Make sure the recipe's base model is prepared (converted once into the model cache)."""
    if config.spec.model == models.TINY:
        return
    began = time.perf_counter()
    path = models.prepare(config.spec.model, log=console.print)
    config.timings["prepare model"] = time.perf_counter() - began
    console.print(f"[green]✓ model[/] {config.spec.model}: {path}")


def run_demo(config: DemoConfig, console: Console) -> None:
    """Run every demo stage in order, reusing finished ones; print the stage times."""
    out, spec = config.out_dir, config.spec
    began = time.perf_counter()
    model_stage(config, console)
    run_stage("data", out / "data", lambda: data_summary(console, out / "data", config), config, console)
    data_file = out / "data" / "bundled.jsonl"
    run_stage(
        "annotate",
        out / "annotated",
        lambda: annotate_stage(data_file, out / "annotated", console),
        config,
        console,
    )
    annotated = out / "annotated" / "rows.jsonl"
    for kind in ("marked", "baseline"):
        run_stage(
            f"build {kind}",
            out / f"train-{kind}",
            lambda kind=kind: build_stage(annotated, out / f"train-{kind}", kind == "baseline", config),
            config,
            console,
        )
    for kind in ("marked", "baseline"):
        run_stage(
            f"train {kind}",
            out / f"model-{kind}",
            lambda kind=kind: train_stage(
                out / f"train-{kind}", out / f"model-{kind}", spec.train_recipe, config.seed
            ),
            config,
            console,
        )
    record = run_stage("evaluate", out / "report", lambda: evaluate_stage(config, console), config, console)
    showcase_began = time.perf_counter()
    showcase(config, console)
    config.timings["show answers"] = time.perf_counter() - showcase_began
    timing = Table(title=f"demo stages (this run: {time.perf_counter() - began:.0f} s)")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for name, seconds in config.timings.items():
        timing.add_row(name, f"{seconds:.0f}" + (" (cached: when it ran)" if name in config.cached else ""))
    console.print(timing)
    io.atomic_write_text(out / TIMINGS, json.dumps(config.timings, indent=2) + "\n")
    io.atomic_write_text(out / CACHED, json.dumps(config.cached) + "\n")
    console.print(f"report: [bold]{Path(record['summary']['report']).resolve()}[/]")
