"""Generation with a marked model: conditioning, controlling and fixed modes (docs/architecture.md §1, §2).

- conditioning: no markers given; the model writes its template block, then the answer.
- controlling: the caller's markers go into the user turn exactly as in training
  (`template.with_prompt_markers`); with `strict` they are also prefilled at the start of the
  completion's block so the model cannot contradict them.
- fixed: `instructions.detect` turns constraints stated in plain words into markers and removes the
  sentence that stated them; then as controlling.

In controlling and fixed modes, `GenerationConfig.guidance` G != 1 guides the answer by the given markers
(`treasure.guidance`), and `length_budget` holds the answer to a given `length_tokens` (`treasure.budget`).
The answer never contains the template; the markers the model wrote are parsed separately.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from treasure import budget, guidance, instructions, models, template
from treasure.artifacts import TAXONOMY, ModelDir
from treasure.backends import (
    Backend,
    Completion,
    GenerationConfig,
    Steering,
    Stop,
    load_backend,
    refuse_guidance,
)
from treasure.errors import MarkerError, TreasureError
from treasure.knobs import knob
from treasure.special_tokens import Defuser
from treasure.taxonomy import Taxonomy

__all__ = [
    "MODES",
    "AnswerFilter",
    "Generation",
    "GenerationConfig",
    "Generator",
    "Mode",
    "ModelMarkers",
    "Prepared",
    "resolve_mode",
]

Mode = Literal["conditioning", "controlling", "fixed"]
MODES: tuple[str, ...] = get_args(Mode)
log = logging.getLogger(__name__)


def resolve_mode(mode: str | None, markers: Mapping[str, Any] | None) -> str:
    """The mode a request runs in: `mode` when given, else controlling with markers and conditioning
    without. `TreasureError` for an unknown mode, `MarkerError` for markers under conditioning."""
    if mode is None:
        return "controlling" if markers else "conditioning"
    if mode not in MODES:
        raise TreasureError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if mode == "conditioning" and markers:
        raise MarkerError("conditioning mode takes no markers; use mode 'controlling' to set markers")
    return mode


@dataclass
class GenerateConfig:
    """What `treasure generate` asks of a model dir: the mode, strictness, backend and decoding options."""

    mode: str | None = field(
        default=None,
        metadata=knob(
            f"One of {', '.join(MODES)} (default: controlling if --marker is given, else conditioning)."
        ),
    )
    strict: bool = field(
        default=False, metadata=knob("Prefill the given markers so the model cannot contradict them.")
    )
    backend: str = field(default="transformers", metadata=knob("transformers or vllm."))
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise TreasureError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.backend == "vllm":  # refused before an engine is loaded for nothing
            refuse_guidance(self.generation, "vLLM")


@dataclass(frozen=True)
class ModelMarkers:
    """What a model dir says about markers, read from its small files only (taxonomy.yaml, build.json,
    train.json; no weights), so that given markers are checked before a model loads.

    `trained`: the markers the model was trained with (build.json `config.markers`, else the markers the
    build used), None when unknown. A registry name is a base model: default taxonomy, no markers.
    """

    name: str
    taxonomy: Taxonomy
    marked: bool = True
    trained: frozenset[str] | None = None

    @classmethod
    def of(cls, model: str | Path) -> ModelMarkers:
        """Read them from a model dir (or a registry name, without preparing it)."""
        if str(model) in models.REGISTRY:
            return cls(str(model), Taxonomy.default(), marked=False, trained=frozenset())
        model_dir = ModelDir.load(model)
        report = model_dir.build_report
        trained = None
        if report is not None:
            trained = report.trained_markers or frozenset(report.data.get("markers") or ()) or None
        return cls(
            model_dir.path.name,
            model_dir.taxonomy or Taxonomy.default(),
            model_dir.train_report.marked if model_dir.train_report else True,
            trained,
        )

    def check(
        self, markers: Mapping[str, Any] | None, mode: str = "controlling", strict: bool = False
    ) -> dict[str, Any]:
        """The given markers, canonical; `MarkerError` (with the valid values or the trained markers) or
        `TreasureError` for what `Generator.prepare` would refuse, and for markers the model never saw."""
        given = dict(markers or {})
        resolve_mode(mode, given)
        given = self.taxonomy.user_markers(given)
        if not self.marked and (given or strict):
            raise TreasureError(
                f"model '{self.name}' was trained without markers (train.json marked=false): "
                "it can only run in conditioning mode without --strict"
            )
        unknown = sorted(set(given) - self.trained) if self.trained is not None else []
        if unknown:
            raise MarkerError(
                f"model '{self.name}' was not trained with marker(s) {', '.join(unknown)}; "
                f"trained markers: {', '.join(sorted(self.trained or ())) or 'none'}"
            )
        return given


@dataclass
class Prepared:
    """Everything fed to the model for one prompt: `text` is the exact input string (chat + `prefill`).

    `negative_prompt` is the chat of marker guidance's negative branch: the same turns, the user turn
    without the given markers' block, and no prefill (the chat itself when no marker is given).
    `word_budget` is the `length_tokens` given, or detected in fixed mode (even where the model gets a
    `length_bucket` instead): the answer's word limit when `GenerationConfig.length_budget` is on.
    """

    prompt: str
    model_prompt: str
    user_turn: str
    given_markers: dict[str, Any]
    prefill: str
    text: str
    mode: str
    negative_prompt: str = ""
    word_budget: int | None = None


@dataclass
class Generation:
    """One result: the answer only, the markers written or given, and what was wrong with the block."""

    prompt: str
    response: str
    markers: dict[str, Any] = field(default_factory=dict)
    markers_error: str | None = None
    given_markers: dict[str, Any] = field(default_factory=dict)
    n_tokens: int = 0
    finished: bool = True
    mode: str = "conditioning"
    raw: str = ""


class AnswerFilter:
    """Turns a stream of completion text into a stream of answer text: template blocks are held back.

    `feed` returns the answer text that can be released now; `finish` returns the rest. Their
    concatenation always equals the answer `Generator.finish` returns: the text after the leading
    block with every other block removed (`template.strip_blocks`). Text that could still turn out to
    be a block (a prefix of `<TEMPLATE>`, or an unclosed block) is held back until it is decided.
    """

    def __init__(self) -> None:
        self.raw = ""
        self.emitted = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        return self._release(self._answer_so_far())

    def finish(self) -> str:
        return self._release(template.strip_blocks(template.parse(self.raw).response)[0])

    def _release(self, answer: str | None) -> str:
        if answer is None or len(answer) <= len(self.emitted):
            return ""
        if not answer.startswith(self.emitted):  # cannot happen: kept as a guard for safety
            raise RuntimeError("answer filter released text that is not part of the answer")
        new, self.emitted = answer[len(self.emitted) :], answer
        return new

    def _answer_so_far(self) -> str | None:
        stripped = self.raw.lstrip()
        if template.OPEN.startswith(stripped):
            return None  # empty, or could still become "<TEMPLATE>"
        body = self.raw
        if stripped.startswith(template.OPEN):
            end = stripped.find(template.CLOSE)
            body = stripped[end + len(template.CLOSE) :] if end >= 0 else ""
            if not body:
                return None  # still inside the block, or the "\n" after it may still come
            body = body[1:] if body.startswith("\n") else body
        return template.strip_blocks(body[: _undecided_from(body)])[0]


def _undecided_from(text: str) -> int:
    """Where text that may still become a template block begins (len(text) if nowhere)."""
    opened = text.rfind(template.OPEN)
    if opened >= 0 and text.find(template.CLOSE, opened) < 0:
        return opened
    for size in range(len(template.OPEN) - 1, 0, -1):
        if text.endswith(template.OPEN[:size]):
            return len(text) - size
    return len(text)


class Generator:
    """A model dir (weights, tokenizer with chat template, taxonomy) behind one inference backend."""

    def __init__(
        self,
        backend: Backend,
        taxonomy: Taxonomy,
        marked: bool = True,
        name: str = "model",
        trained_markers: frozenset[str] | None = None,
    ):
        self.backend = backend
        self.taxonomy = taxonomy
        self.marked = marked
        self.name = name
        self.trained_markers = trained_markers  # None: unknown, fixed mode then keeps what it detects
        self.defuser = Defuser.for_tokenizer(backend.tokenizer)

    @classmethod
    def from_model_dir(cls, path: str | Path, backend: str = "transformers", **options: Any) -> Generator:
        """Load a model dir written by `treasure train` (its taxonomy.yaml and train.json included).

        A registry name (`treasure models list`) loads that base model, which knows no markers.
        """
        registry_model = str(path) in models.REGISTRY
        model_dir = ModelDir.load(models.local_path(path))
        taxonomy = model_dir.taxonomy
        if taxonomy is None:
            log.warning("%s has no %s; using the default taxonomy", model_dir.path, TAXONOMY)
            taxonomy = Taxonomy.default()
        marked = model_dir.train_report.marked if model_dir.train_report else not registry_model
        trained = model_dir.build_report.trained_markers if model_dir.build_report else None
        return cls(
            load_backend(backend, model_dir.path, **options),
            taxonomy,
            marked,
            model_dir.path.name,
            trained_markers=trained,
        )

    # ------------------------------------------------------------------ prompt side

    def prepare(
        self,
        prompt: str,
        mode: str = "conditioning",
        markers: Mapping[str, Any] | None = None,
        strict: bool = False,
        history: Sequence[Mapping[str, str]] | None = None,
    ) -> Prepared:
        """Build the exact model input for one prompt; invalid markers raise `MarkerError`."""
        given = dict(markers or {})
        resolve_mode(mode, given)
        model_prompt = prompt
        detected_limit = None
        if mode == "fixed":
            detection = instructions.detect(prompt, taxonomy=self.taxonomy)
            detected = detection.markers
            detected_limit = budget.word_limit(detected)  # kept even where the model gets a bucket instead
            if self.trained_markers is not None:
                detected = instructions.fit_to_trained(detected, self.trained_markers, self.taxonomy)
            given = {**detected, **given}
            model_prompt = detection.prompt
        given = self.taxonomy.user_markers(given)
        if not self.marked and (given or strict):
            raise TreasureError(
                f"model '{self.name}' was trained without markers (train.json marked=false): "
                "it can only run in conditioning mode without --strict"
            )
        user_turn = template.with_prompt_markers(self._user_text(model_prompt), given, self.taxonomy)
        prefill = ""
        if strict:
            block = template.render(given, self.taxonomy)
            prefill = block[: block.rindex(template.CLOSE)]
        messages = [
            {"role": turn["role"], "content": self._user_text(turn["content"])} for turn in history or []
        ]
        chat = self._chat([*messages, {"role": "user", "content": user_turn}])
        negative = chat
        if given:  # guidance's negative branch: the same chat without the given markers
            negative = self._chat([*messages, {"role": "user", "content": self._user_text(model_prompt)}])
        limit = budget.word_limit(given)
        return Prepared(
            prompt,
            model_prompt,
            user_turn,
            given,
            prefill,
            chat + prefill,
            mode,
            negative,
            detected_limit if limit is None else limit,
        )

    def _chat(self, messages: list[dict[str, str]]) -> str:
        tokenizer = self.backend.tokenizer
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _user_text(self, text: str) -> str:
        """Text a user wrote, made inert: marker tags escaped, chat special tokens kept as plain text."""
        return self.defuser.defuse(template.escape(text))

    def branches(self, prepared: Prepared, written: str = "") -> tuple[str, str]:
        """Marker guidance's (positive, negative) model inputs once the completion has `written` text
        (`guidance.branch_texts`)."""
        return guidance.branch_texts(
            prepared.text, prepared.prefill, prepared.negative_prompt, written, prepared.given_markers
        )

    def steering(self, prepared: Prepared, config: GenerationConfig) -> Steering | None:
        """What the backend needs beyond the text for `config`'s guidance and word budget (None: nothing)."""
        guided = config.guided and bool(prepared.given_markers)
        limit = word_limit(prepared, config)
        if not guided and limit is None:
            return None
        return Steering(
            prefill=prepared.prefill,
            negative_prompt=prepared.negative_prompt if guided else None,
            given=frozenset(prepared.given_markers) if guided else frozenset(),
            word_limit=limit,
        )

    def check(self, config: GenerationConfig) -> None:
        """Refuse, with a `TreasureError`, options the backend cannot honour (guidance on vLLM, upstream)."""
        check = getattr(self.backend, "check", None)
        if check is not None:
            check(config)

    def complete(
        self, prepared: Sequence[Prepared], config: GenerationConfig, stop: Stop | None = None
    ) -> list[Completion]:
        """The backend's completions of prepared prompts (one batch), steered where `config` asks for it."""
        self.check(config)
        texts = [p.text for p in prepared]
        steering = [self.steering(p, config) for p in prepared]
        if all(s is None for s in steering) or not getattr(self.backend, "steers", False):
            return self.backend.complete(texts, config, stop)  # a budget is still kept by `finish`
        return self.backend.complete(texts, config, stop, steering)  # type: ignore[call-arg]

    def finish(
        self, prepared: Prepared, completion: Completion, config: GenerationConfig | None = None
    ) -> Generation:
        """Parse a completion into a `Generation` (answer, markers written or given, block errors); with
        `config.length_budget`, the answer is trimmed to the given `length_tokens` (`budget`)."""
        raw = prepared.prefill + completion.text
        parsed = template.parse(raw, self.taxonomy)
        response, stray = template.strip_blocks(parsed.response)
        limit = word_limit(prepared, config)
        if limit is not None:
            response = budget.trim_to_budget(response, limit)
        markers = {**prepared.given_markers, **parsed.markers}
        problems = [parsed.error] if parsed.error else []
        if self.marked and not parsed.has_block:
            problems = ["no template block at the start of the completion"]
        if stray:
            problems.append(f"{stray} template block(s) removed from the answer")
        return Generation(
            prompt=prepared.prompt,
            response=response,
            markers=markers,
            markers_error="; ".join(problems) or None,
            given_markers=prepared.given_markers,
            n_tokens=completion.n_tokens,
            finished=completion.finished,
            mode=prepared.mode,
            raw=raw,
        )

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        mode: str = "conditioning",
        markers: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        strict: bool = False,
        config: GenerationConfig | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """Generate for every prompt; `markers` is one dict for all prompts or one per prompt."""
        config = config or GenerationConfig()
        self.check(config)
        per_prompt = _per_prompt_markers(markers, len(prompts))
        prepared = [self.prepare(p, mode, m, strict) for p, m in zip(prompts, per_prompt, strict=True)]
        results: list[Generation] = []
        size = max(1, config.batch_size)
        for index, start in enumerate(range(0, len(prepared), size)):
            chunk = prepared[start : start + size]
            completions = self.complete(chunk, replace(config, seed=config.seed + index))
            results.extend(self.finish(p, c, config) for p, c in zip(chunk, completions, strict=True))
            if progress is not None:
                progress(len(chunk))
        return results

    def stream(
        self,
        prompt: str,
        mode: str = "conditioning",
        markers: Mapping[str, Any] | None = None,
        strict: bool = False,
        config: GenerationConfig | None = None,
        history: Sequence[Mapping[str, str]] | None = None,
        stop: Stop | None = None,
    ) -> Iterator[str | Generation]:
        """Yield answer text pieces (never the template), then the finished `Generation`."""
        prepared = self.prepare(prompt, mode, markers, strict, history)
        return self.stream_prepared(prepared, config, stop)

    def stream_prepared(
        self, prepared: Prepared, config: GenerationConfig | None = None, stop: Stop | None = None
    ) -> Iterator[str | Generation]:
        """`stream` for a prompt already made by `prepare`. Options the backend cannot honour are refused
        (`check`) when the iteration starts; call `check` first to refuse them before."""
        config = config or GenerationConfig()
        self.check(config)
        steering = self.steering(prepared, config)
        limit = word_limit(prepared, config)
        answer = AnswerFilter()
        answer.feed(prepared.prefill)
        within = budget.BudgetFilter(limit) if limit is not None else None
        if steering is not None and getattr(self.backend, "steers", False):
            stream = self.backend.stream(prepared.text, config, stop, steering)  # type: ignore[call-arg]
        else:
            stream = self.backend.stream(prepared.text, config, stop)
        pieces: list[str] = []
        for piece in stream:
            pieces.append(piece)
            released = answer.feed(piece)
            if within is not None:
                released = within.feed(released)
            if released:
                yield released
        rest = answer.finish()
        if within is not None:
            rest = within.feed(rest) + within.finish()
        if rest:
            yield rest
        text = "".join(pieces)
        n_tokens = self.backend.count_tokens(text)
        stopped = stop is not None and stop.requested()  # cut short by a deadline or a cancel
        yield self.finish(
            prepared, Completion(text, n_tokens, n_tokens < config.max_new_tokens and not stopped), config
        )


def word_limit(prepared: Prepared, config: GenerationConfig | None) -> int | None:
    """The answer's word limit: `prepared.word_budget` when `config.length_budget` is on, else None."""
    return prepared.word_budget if config is not None and config.length_budget else None


def _per_prompt_markers(markers: Any, n: int) -> list[Mapping[str, Any] | None]:
    if markers is None or isinstance(markers, Mapping):
        return [markers] * n
    markers = list(markers)
    if len(markers) != n:
        raise TreasureError(f"got {len(markers)} marker dicts for {n} prompts; give one per prompt")
    return markers
