"""README's "What it measured" block, rendered from a recorded demo run (`metrics.json` + `timings.json`).

The block sits between `<!-- demo-results:start -->` and `<!-- demo-results:end -->` in README.md: the
stage times, the length-instruct table, the adherence table and the language-protocol line (one fenced text
block), and the targets table of issue 18. `python scripts/demo_results.py docs/demo-run --write README.md`
rewrites it; `--check` exits 1 when README differs, so no measured figure is copied by hand. Another recipe's
run has its own named block in its own page (`--block full` in docs/smollm2-full.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treasure.artifacts import METRICS

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"


def block_markers(name: str = "") -> tuple[str, str]:
    """The start and end markers of README's block `name` ("" : the demo's own)."""
    if not name:
        return START, END
    return f"<!-- demo-results:{name}:start -->", f"<!-- demo-results:{name}:end -->"


TIMINGS = "timings.json"  # the demo's stage times, beside the report's METRICS
CACHED = "cached.json"  # the stages a run took from the cache (their time is from the run that made them)
STAGE_NAMES = {"show answers": "answers"}  # timings.json name → README name
MIN_STAGE_S = 1.0  # stages faster than this are left out of the stage-times line
# The column beside a length-instruct row that is not judged differently from the first judged row
ROW_NOTES = {
    "fixed": "(length_tokens = N, learned)",
    "fixed-budget": "(decoding rule: cut at the last sentence end ≤ N words)",
}
GUIDED_NOTE = "(marker guidance)"
CONTROLLING = "controlling"
RATE_WIDTH = 8  # an adherence rate ends 8 characters into its column (its readable share follows)


@dataclass(frozen=True)
class Targets:
    """Issue 18's targets for the SmolLM2 demo (shares are fractions)."""

    language: float = 0.80  # each language's adherence under controlling
    length_bucket: float = 0.85  # mean length_bucket adherence under controlling
    long_over_concise: float = 3.0  # median words, controlling long ÷ concise
    fixed_violation: float = 0.05  # +fixed's violation rate
    language_protocol_points: float = 10.0  # TreasureMarked − Baseline, the paper's language protocol
    tie_share: float = 0.9  # from this share of ties on, the judge "cannot separate" the models


@dataclass(frozen=True)
class DemoRun:
    """A recorded demo run: the evaluate stage's metrics.json and the demo's timings.json."""

    metrics: Mapping[str, Any]
    timings: Mapping[str, float]
    cached: tuple[str, ...] = ()

    @classmethod
    def load(cls, run_dir: str | Path) -> DemoRun:
        run_dir = Path(run_dir)
        cached = run_dir / CACHED
        return cls(
            json.loads((run_dir / METRICS).read_text(encoding="utf-8")),
            json.loads((run_dir / TIMINGS).read_text(encoding="utf-8")),
            tuple(json.loads(cached.read_text(encoding="utf-8"))) if cached.is_file() else (),
        )

    def suite(self, name: str) -> Mapping[str, Any]:
        section = (self.metrics.get("suites") or {}).get(name)
        if not isinstance(section, Mapping):
            raise KeyError(f"{METRICS} has no suites.{name}")
        return section


# ---------------------------------------------------------------- numbers


def percent(share: float, digits: int = 1) -> str:
    """A share as a percentage with at most `digits` decimals, trailing zeros dropped: 0.875 → 87.5%."""
    text = f"{100 * share:.{digits}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"


def points(delta: float) -> str:
    """A difference of shares in percentage points, signed: 0.025 → +2.5."""
    text = f"{100 * delta:+.1f}"
    return text[:-2] if text.endswith(".0") else text


def words(value: float) -> str:
    """A median word count: 16.0 → 16, 42.5 → 42.5."""
    return f"{value:g}"


def seconds(value: float) -> str:
    return f"{value:,.0f} s"


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


# ---------------------------------------------------------------- the fenced text block


def stage_times(timings: Mapping[str, float], cached: tuple[str, ...] = ()) -> str:
    """`Stage times: annotate 22 s, …: about 73 minutes.` (stages under MIN_STAGE_S left out; a stage
    taken from the cache shows the time of the run that made it, marked "cached")."""
    shown = [
        f"{STAGE_NAMES.get(k, k)} {seconds(v)}{' (cached)' if k in cached else ''}"
        for k, v in timings.items()
        if v >= MIN_STAGE_S
    ]
    total = sum(timings.values())
    return f"Stage times: {', '.join(shown)}: about {total / 60:.0f} minutes."


def length_instruct_lines(run: DemoRun) -> list[str]:
    section = run.suite("length_instruct")
    limits = section.get("limits") or {}
    lines = [
        f" Length instructions (AlpacaEval-LI; limits N median {words(limits['median'])} words, "
        f"{limits['min']}–{limits['max']})",
        f" {'Model':<16}{'Violation rate':>15}{'Win rate':>11}{'n':>6}   Judge",
    ]
    judged = False
    for row in section["rows"]:
        name, note = row["name"], row.get("judge") or ""
        if name != "baseline":
            if judged:
                note = ROW_NOTES.get(name, GUIDED_NOTE if "-g" in name else note)
            judged = True
        lines.append(
            f" {row['label']:<16}{_pct1(row['violation_rate']):>15}"
            f"{_pct1(row['win_rate']):>11}{row['n']:>6}   {note}"
        )
    return lines


def _pct1(share: float) -> str:
    return f"{100 * share:.1f}%"


def adherence_rates(run: DemoRun, rate: str = "rate") -> dict[tuple[str, str], dict[str, float]]:
    """(marker, value) → mode → the cells' `rate` ("rate", or "readable_rate": on the value and readable,
    in runs from 2026-12-07 on), in metrics order; cells without it are left out."""
    rates: dict[tuple[str, str], dict[str, float]] = {}
    for cell in run.suite("adherence")["cells"]:
        if rate in cell:
            rates.setdefault((cell["marker"], cell["value"]), {})[cell["mode"]] = cell[rate]
    return rates


def adherence_lines(run: DemoRun) -> list[str]:
    modes = list(run.suite("adherence")["modes"])
    readable = adherence_rates(run, "readable_rate")
    widths = [len(mode) + (8 if readable else 3) for mode in modes]
    head = "".join(f"{mode:<{w}}" for mode, w in zip(modes, widths, strict=True)).rstrip()
    title = " Marker adherence (answer re-annotated; conditioning = no marker given, base rate)"
    if readable:
        title = " Marker adherence (answer re-annotated; in brackets: on target and readable, no loop)"
    lines = [title, f" {'marker':<16}{'value':<11}{head}"]
    for key, by_mode in adherence_rates(run).items():
        marker, value = key
        cells = "".join(
            (f"{_rate(by_mode.get(mode)):>{RATE_WIDTH}}" + _bracket(readable.get(key, {}).get(mode))).ljust(w)
            for mode, w in zip(modes, widths, strict=True)
        ).rstrip()
        lines.append(f" {marker:<16}{value:<11}{cells}")
    return lines


def _rate(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _bracket(share: float | None) -> str:
    return "" if share is None else f" ({100 * share:.0f})"


def language_protocol(run: DemoRun) -> str:
    section = run.suite("language_request")
    rows = {row["name"]: row for row in section["rows"]}
    base, marked = rows["baseline"], rows["conditioning"]
    return (
        " Language requested in the prompt (the paper's protocol): "
        f"{base['label']} {_pct1(base['pass_rate']['overall'])}, "
        f"{marked['label']} {_pct1(marked['pass_rate']['overall'])} "
        f"({points(section['delta']['overall'])} points)"
    )


def text_block(run: DemoRun) -> str:
    lines = ["```", *length_instruct_lines(run), "", *adherence_lines(run), "", language_protocol(run), "```"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the targets table


def _controlling(rates: Mapping[str, float], guided: bool = False) -> float | None:
    """The rate under plain controlling, or under its first guided variant (`controlling G=…`)."""
    for mode, rate in rates.items():
        if mode.startswith(CONTROLLING + " G=") if guided else mode == CONTROLLING:
            return rate
    return None


def _guided_label(run: DemoRun) -> str:
    for mode in run.suite("adherence")["modes"]:
        if mode.startswith(CONTROLLING + " G="):
            return mode.removeprefix(CONTROLLING + " ")
    return ""


def language_row(run: DemoRun, targets: Targets) -> list[str]:
    rates = {value: r for (marker, value), r in adherence_rates(run).items() if marker == "language"}
    names = " / ".join(rates)
    plain = [_controlling(r) for r in rates.values()]
    value = " / ".join(_rate(r) for r in plain)
    extras = []
    if guided := _guided_label(run):
        extras.append(f"{guided}: " + " / ".join(_rate(_controlling(r, True)) for r in rates.values()))
    base = sorted({_rate(r.get("conditioning")) for r in rates.values()})
    extras.append("conditioning " + " / ".join(base))
    ok = all(r is not None and r >= targets.language for r in plain)
    return [
        f"language under controlling, English prompts, {names}",
        f"{value} ({'; '.join(extras)})",
        f"≥ {percent(targets.language)}: {met(ok)}",
    ]


def length_bucket_row(run: DemoRun, targets: Targets) -> list[str]:
    rates = [r for (marker, _), r in adherence_rates(run).items() if marker == "length_bucket"]
    plain = [_controlling(r) or 0.0 for r in rates]
    mean = statistics.fmean(plain)
    value = f"{_rate(mean)} ({' / '.join(f'{100 * r:.0f}' for r in plain)}%"
    if guided := _guided_label(run):
        value += f"; {guided} {_rate(statistics.fmean(_controlling(r, True) or 0.0 for r in rates))}"
    return [
        f"length_bucket adherence under controlling, mean of {_count_word(len(rates))}",
        value + ")",
        f"≥ {percent(targets.length_bucket)}: {met(mean >= targets.length_bucket)}",
    ]


def _count_word(n: int) -> str:
    return {2: "two", 3: "three", 4: "four"}.get(n, str(n))


def median_words_row(run: DemoRun, targets: Targets) -> list[str]:
    by_value = run.suite("adherence")["lengths"][CONTROLLING]
    medians = {value: statistics.median(counts) for value, counts in by_value.items()}
    ratio = medians["long"] / medians["concise"]
    return [  # `length_tokens` of the re-annotated answers: words and punctuation, as the paper counts
        f"median length_tokens under controlling {' / '.join(medians)}",
        " / ".join(words(m) for m in medians.values()),
        f"long ≥ {targets.long_over_concise:g}× concise: {met(ratio >= targets.long_over_concise)} "
        f"({ratio:.2f}×)".replace(".00×", "×"),
    ]


def violation_row(run: DemoRun, targets: Targets) -> list[str]:
    rows = {row["name"]: row for row in run.suite("length_instruct")["rows"]}
    base, marked, fixed = (rows[k]["violation_rate"] for k in ("baseline", "conditioning", "fixed"))
    labels = [rows[k]["label"] for k in ("baseline", "conditioning", "fixed")]
    fixed_ok = fixed <= targets.fixed_violation and fixed < marked
    return [
        f"length-instruct violation {' / '.join(labels)}",
        f"{percent(base)} / {percent(marked)} / {percent(fixed)}",
        f"+fixed ≤ {percent(targets.fixed_violation)} and +fixed < TreasureMarked < Baseline: "
        f"TreasureMarked < Baseline {met(marked < base)}; +fixed {met(fixed_ok)}",
    ]


def budget_row(run: DemoRun) -> list[str] | None:
    rows = {row["name"]: row for row in run.suite("length_instruct")["rows"]}
    if "fixed-budget" not in rows:
        return None
    row = rows["fixed-budget"]
    return [
        "+fixed +budget (a guarantee, not learned)",
        f"{percent(row['violation_rate'])} violations, win rate {percent(row['win_rate'])}",
        "reported beside the learned row",
    ]


def protocol_row(run: DemoRun, targets: Targets) -> list[str]:
    section = run.suite("language_request")
    rows = {row["name"]: row["pass_rate"]["overall"] for row in section["rows"]}
    delta = section["delta"]["overall"]
    return [
        "paper language protocol, TreasureMarked − Baseline",
        f"{points(delta)} points ({percent(rows['conditioning'])} vs {percent(rows['baseline'])})",
        f"≥ +{targets.language_protocol_points:g}: {met(100 * delta >= targets.language_protocol_points)}",
    ]


def win_rate_row(run: DemoRun, targets: Targets) -> list[str]:
    section = run.suite("win_rate")
    pair = section["marked_vs_baseline"]
    ties = round(pair["tie"] * pair["n"])
    judge = str(section.get("judge", "")).split(":")[0]
    verdict = f"the {judge} judge cannot separate them" if pair["tie"] >= targets.tie_share else "no target"
    return [
        "win rate marked vs baseline, plain prompts",
        f"{percent(pair['win_rate'])} ({ties} ties)",
        verdict,
    ]


def targets_table(run: DemoRun, targets: Targets = Targets()) -> str:
    rows = [
        language_row(run, targets),
        length_bucket_row(run, targets),
        median_words_row(run, targets),
        violation_row(run, targets),
        budget_row(run),
        protocol_row(run, targets),
        win_rate_row(run, targets),
    ]
    lines = ["| measure | value | target (issue 18) |", "|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows if row is not None]
    return "\n".join(lines)


# ---------------------------------------------------------------- README


def render(run: DemoRun, targets: Targets = Targets()) -> str:
    """The block between the markers (without them): stage times, the text block, the targets table."""
    return "\n\n".join([stage_times(run.timings, run.cached), text_block(run), targets_table(run, targets)])


def replace_block(readme: str, block: str, name: str = "") -> str:
    """README text with its block `name` replaced by `block`; ValueError when the markers are missing."""
    first, last = block_markers(name)
    head, start, rest = readme.partition(first)
    _, end, tail = rest.partition(last)
    if not start or not end:
        raise ValueError(f"README has no {first} … {last} block")
    return f"{head}{first}\n{block}\n{last}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help=f"dir holding the run's {METRICS} and {TIMINGS}")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="README", help="rewrite README's block")
    action.add_argument("--check", type=Path, metavar="README", help="exit 1 if README's block differs")
    parser.add_argument("--block", default="", help="the README block's name (default: the demo's own)")
    args = parser.parse_args(argv)
    block = render(DemoRun.load(args.run_dir))
    target = args.write or args.check
    if target is None:
        print(block)
        return 0
    old = target.read_text(encoding="utf-8")
    new = replace_block(old, block, args.block)
    if args.write:
        target.write_text(new, encoding="utf-8")
        return 0
    if new != old:
        print(
            f"{target}: the demo-results block differs from {args.run_dir}; run with --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
