"""docs/benchmarks.md's table cites what the benchmark scripts wrote: every figure in a row whose source
JSON is in bench/results/ is formatted here from that JSON and must appear in the row, and the row's figure
cell holds no other number. The "Commands" table's scripts write the files it names.

`FIGURES` maps a JSON file to a function giving, per row (a unique prefix of the row's first cell), the
strings each column must contain. Rounding is the table's: rates and tokens/s to the unit or 0.1, ratios
`×0.00`, shares as `percent` (at most one decimal). A figure the JSON stores already rounded (the detector's
precision, tokens/s per GFLOPS) is computed from the JSON's raw counts or rates, so it is not rounded twice.
What no JSON holds (the header's dates, targets and verdicts of rows without them in the JSON) is not checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from treasure.demo_results import percent

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"
COLUMNS = ("benchmark", "figure", "target", "met")

Json = Mapping[str, Any]
Cells = dict[str, list[str]]  # column → strings it must contain


def ratio(x: float) -> str:
    return f"×{x:.2f}"


def rate(x: float) -> str:
    """A rate to the unit, with thousands separators: 1148.1 → 1,148."""
    return f"{x:,.0f}"


def one(x: float) -> str:
    return f"{x:.1f}"


def both(values: list[float], fmt: Callable[[float], str] = one) -> str:
    return " / ".join(fmt(v) for v in values)


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def annotate(j: Json) -> dict[str, Cells]:
    cases, targets, ratios = j["cases"], j["targets"], j["ratios"]
    fast, full = cases["rules_language_local_2proc"], cases["full_local_1proc"]
    fast_t, full_t = targets["rules_language_rows_per_s"], targets["full_rows_per_s"]
    local_t, ray_t = targets["local_scaling_1_to_2"], targets["ray_scaling_1_to_2"]
    assert local_t["target"] == ray_t["target"]
    return {
        "annotate, rules + language, 2 processes": {
            "figure": [f"{rate(fast['rows_per_s'])} rows/s ({rate(fast['rows_per_s_first_run'])})"],
            "target": [f"≥ {rate(fast_t['target'])}"],
            "met": [yes(fast_t["met"])],
        },
        "annotate, full embedded set, 1 process": {
            "figure": [f"{rate(full['rows_per_s'])} rows/s ({rate(full['rows_per_s_first_run'])})"],
            "target": [f"≥ {rate(full_t['target'])}"],
            "met": [yes(full_t["met"])],
        },
        "annotate, 1 → 2 processes / Ray workers": {
            "figure": [
                f"{ratio(ratios['local_2proc_over_1proc'])} / {ratio(ratios['ray_2workers_over_1worker'])}"
            ],
            "target": [f"×{local_t['target']:g}"],
            "met": [yes(local_t["met"] and ray_t["met"])],
        },
    }


def train(j: Json) -> dict[str, Cells]:
    speed, setup = j["tokens_per_s"], j["setup"]
    marked, categorical = j["template_overhead"], j["template_overhead_categorical_only"]
    return {
        "train, `treasure train` vs plain TRL": {
            "figure": [f"{ratio(speed['median_ratio'])} (median of {setup['rounds']} rounds)"],
            "target": [f"≥ ×{speed['target_ratio']:g}"],
            "met": [yes(speed["median_ratio"] >= speed["target_ratio"])],
        },
        "build, template overhead median": {
            "benchmark": ["`tiny-lines`"],
            "figure": [
                f"{percent(marked['tiny-lines']['median'])} / {percent(categorical['tiny-lines']['median'])}"
            ],
        },
    }


def train_lora(j: Json) -> dict[str, Cells]:
    speed, setup = j["tokens_per_s"], j["setup"]
    weighted = next(k for k in speed if k.startswith("treasure_decision_weight_"))
    return {
        "train, `treasure train` LoRA on SmolLM2": {
            "figure": [
                f"{ratio(speed['median_ratio'])} (median of {setup['rounds']} rounds, "
                f"{setup['steps']} steps each: "
                f"{both(speed['treasure_train_lora'])} vs {both(speed['plain_peft_trl'])} tokens/s",
                f"`--steps {setup['steps']} --rounds {setup['rounds']} --rows {setup['rows']}`",
                f"`decision_weight: {weighted.rsplit('_', 1)[1]}` {both(speed[weighted])} tokens/s",
                f"{ratio(speed['weighted_vs_plain_loss_ratio'])} of the plain loss",
            ],
            "target": [f"≥ ×{speed['target_ratio']:g}"],
            "met": [yes(speed["median_ratio"] >= speed["target_ratio"])],
        },
    }


def train_ddp(j: Json) -> dict[str, Cells]:
    speed, setup, loss = j["tokens_per_s"], j["setup"], j["final_train_loss"]
    return {
        "train, two DDP processes vs one with gradient accumulation 2": {
            "benchmark": [f"{setup['steps']} steps", f"global batch {setup['global_batch']}"],
            "figure": [
                f"{ratio(speed['median_ratio_ddp_vs_one'])} (median of {setup['rounds']} rounds: "
                f"{both(speed['two_processes_ddp'])} vs {both(speed['one_process_ga2'])} tokens/s)",
                f"final train loss {loss['two_processes_ddp']:.3f} vs {loss['one_process_ga2']:.3f}",
            ],
        },
    }


def tagger_vllm(j: Json) -> dict[str, Cells]:
    on, off = j["json_schema"], j["off"]
    agree = on["agreement_with_dev_labels"]
    return {
        "LLM tagger on vLLM's server": {
            "benchmark": [f"{j['rows']} dev rows", f"concurrency {j['concurrency']}", j["date"]],
            "figure": [
                f"{percent(on['invalid_label_rate'])} / {percent(off['invalid_label_rate'])}",
                f"task / domain agreement {percent(agree['task']['accuracy'])} / "
                f"{percent(agree['domain']['accuracy'])}",
                f"{both([on['rows_per_s'], off['rows_per_s']])} rows/s",
            ],
            "met": [yes(on["invalid_label_rate"] == 0)],
        },
    }


def generate_guidance(j: Json) -> dict[str, Cells]:
    guidance = j["generation"]["guidance"]
    guided = next(k for k in guidance if k.startswith("guided (G="))
    unguided = next(k for k in guidance if k.startswith("unguided"))
    g = guided.removeprefix("guided (").removesuffix(")")
    speed = {k: one(guidance[k]["tokens_per_s"]) for k in (guided, unguided)}
    return {
        "generate, marker guidance": {
            "benchmark": [f"{g} vs unguided"],
            "figure": [
                f"{ratio(guidance['guided_over_unguided_tokens_per_s'])} "
                f"({speed[guided]} vs {speed[unguided]} tokens/s)"
            ],
        },
    }


def bf16(j: Json) -> dict[str, Cells]:
    peak, speed = j["matmul_gflops"], j["train_tokens_per_s"]
    rounds = {len(r) for r in j["train_rounds"].values()}
    batch, lora = (part.strip() for part in j["batch"].split(",")[:2])

    def per_gflops(kind: str) -> str:  # from the rates: the JSON's value is already rounded to 3 decimals
        return f"{speed[kind] / peak[kind]:.2f} ({kind})"

    return {
        "train, bf16 autocast vs fp32": {
            "benchmark": [
                j["date"],
                lora,
                batch.replace(" x ", " × "),
                f"median of {rounds.pop()} alternating rounds",
                f"matmul peak {rate(peak['fp32'])} → {rate(peak['bf16'])} GFLOPS "
                f"({ratio(j['matmul_bf16_over_fp32'])})",
                f"trained tokens/s {rate(speed['fp32'])} → {rate(speed['bf16'])}",
                f"tokens/s per peak GFLOPS {per_gflops('fp32')} / {per_gflops('bf16')}",
            ],
            "figure": [ratio(j["train_bf16_over_fp32"])],
            "met": [yes(j["native_bf16"] and j["train_bf16_over_fp32"] > 1)],
        },
    }


def generate(j: Json) -> dict[str, Cells]:
    per_request = j["generation"]["per_request"]
    marked, plain = per_request["conditioning"]["tokens_per_s"], per_request["baseline_plain"]["tokens_per_s"]
    length = j["detector"]["scores"]["ifeval_input_data.jsonl.gz"]["length_tokens"]
    tp, fp, fn = length["tp"], length["fp"], length["fn"]
    return {
        "generate, tokens/s conditioning vs plain": {
            "figure": [f"{rate(marked)} vs {rate(plain)} tokens/s"],
            "met": [yes(abs(marked / plain - 1) <= 0.05) + " (within 5%)"],
        },
        "fixed-mode detector, IFEval length limits": {
            # from the counts: the JSON's precision is already rounded to 3 decimals
            "figure": [f"precision {tp / (tp + fp):.2f}, recall {tp / (tp + fn):.2f}"],
        },
    }


def serve_load(j: Json) -> dict[str, Cells]:
    fair_key = next(k for k in j["runs"] if k != "turn_tokens=0")
    fair, fifo = j["runs"][fair_key], j["runs"]["turn_tokens=0"]
    return {
        "serve under load": {
            "benchmark": [
                f"{j['shorts']} short + 1 long request",
                f"`--turn-tokens {fair_key.removeprefix('turn_tokens=')}`",
                j["date"],
            ],
            "figure": [
                f"{ratio(j['short_p95_ratio_fair_over_fifo'])} "
                f"({one(fair['short_p95_s'])} vs {one(fifo['short_p95_s'])} s; "
                f"p50 {ratio(j['short_p50_ratio_fair_over_fifo'])}: "
                f"{one(fair['short_p50_s'])} vs {one(fifo['short_p50_s'])} s)"
            ],
        },
    }


def serve_upstream(j: Json) -> dict[str, Cells]:
    straight, through = j["straight_to_engine"], j["through_treasure"]
    return {
        "serve, `treasure serve --upstream` vs the engine alone": {
            "benchmark": [f"{j['requests']} concurrent chats", f"{j['request_tokens']} tokens", j["date"]],
            "figure": [
                f"{ratio(j['ratio_tokens_per_s_through_over_straight'])} "
                f"({one(through['median_completion_tokens_per_s'])} vs "
                f"{one(straight['median_completion_tokens_per_s'])} tokens/s",
                f"{through['errors']} errors",
                f"{j['answers_differing']} answers differing",
            ],
            "met": [yes(j["ratio_tokens_per_s_through_over_straight"] >= 0.9)],
        },
    }


def vllm(j: Json) -> dict[str, Cells]:
    run, load = j["throughput"], j["load"]
    speed, same = run["tokens_per_s"], run["identical_greedy_outputs"]

    def chats(side: Json) -> str:
        return f"{side['errors']} errors, {side['answers_differing_from_one_at_a_time']}"

    def timings(side: Json) -> str:
        return (
            f"p50 {one(side['p50_s'])} s, p95 {one(side['p95_s'])} s, wall {one(side['wall_s'])} s, "
            f"{rate(side['completion_tokens_per_s'])} tokens/s"
        )

    backend, upstream = load["serve_backend_vllm"], load["serve_upstream_vllm_server"]
    return {
        "vLLM backend vs plain vLLM tokens/s": {
            "benchmark": [
                f"{run['prompts']} chat prompts × {run['max_new_tokens']} tokens greedy",
                f"median of {run['rounds']} alternating rounds",
                j["date"],
            ],
            "figure": [
                f"{ratio(run['ratio_treasure_vllm_over_plain_vllm'])} "
                f"({one(speed['treasure_vllm'])} vs {one(speed['plain_vllm'])} tokens/s)"
            ],
        },
        "vLLM backend vs transformers backend": {
            "figure": [
                f"{ratio(run['ratio_treasure_vllm_over_transformers'])} "
                f"({one(speed['treasure_vllm'])} vs {one(speed['treasure_transformers'])} tokens/s)"
            ],
        },
        "greedy outputs identical": {
            "figure": [
                f"{same['treasure_vllm_vs_plain_vllm']}/{same['of']} / "
                f"{same['treasure_vllm_vs_transformers']}/{same['of']}"
            ],
        },
        f"{backend['requests']} concurrent chats, `treasure serve --backend vllm`": {
            "benchmark": [f"({load['max_tokens']} tokens each)"],
            "figure": [
                f"{chats(backend)} answers differing from one-at-a-time; {timings(backend)} "
                f"(one at a time: {one(load['one_at_a_time_wall_s'])} s)"
            ],
        },
        f"{upstream['requests']} concurrent chats, `treasure serve --upstream`": {
            "figure": [f"{chats(upstream)} differing; {timings(upstream)}"],
        },
    }


FIGURES: dict[str, Callable[[Json], dict[str, Cells]]] = {
    "annotate.json": annotate,
    "train.json": train,
    "train_lora.json": train_lora,
    "train_ddp.json": train_ddp,
    "tagger_vllm.json": tagger_vllm,
    "generate_guidance_smollm2.json": generate_guidance,
    "bf16.json": bf16,
    "generate.json": generate,
    "serve_load.json": serve_load,
    "vllm.json": vllm,
    "serve_upstream.json": serve_upstream,
}
# Rows of the table no JSON in bench/results/ backs, with the reason (none at present)
UNCHECKED: dict[str, str] = {}


def table(text: str, header: str) -> list[list[str]]:
    """The cells of each body row of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def benchmark_rows() -> list[list[str]]:
    rows = table(PAGE.read_text(encoding="utf-8"), "| benchmark | figure |")
    assert rows and all(len(row) == len(COLUMNS) for row in rows)
    return rows


def contains(cell: str, figure: str) -> bool:
    """`figure` appears in `cell` as a whole: not part of a longer number (`0%` is not in `100%`)."""
    return re.search(rf"(?<![\d.,]){re.escape(figure)}(?!\d|[.,]\d)", cell) is not None


def expected() -> dict[str, tuple[str, Cells]]:
    """Row key → (JSON file, cells), from every JSON in FIGURES."""
    rows: dict[str, tuple[str, Cells]] = {}
    for name, figures in FIGURES.items():
        for key, cells in figures(json.loads((RESULTS / name).read_text(encoding="utf-8"))).items():
            assert key not in rows, key
            rows[key] = (name, cells)
    return rows


EXPECTED = expected()


def the_row(key: str) -> list[str]:
    matches = [row for row in benchmark_rows() if row[0].startswith(key)]
    assert len(matches) == 1, f"{len(matches)} rows of {PAGE.name} start with {key!r}"
    return matches[0]


@pytest.mark.parametrize("key", list(EXPECTED))
def test_row_figures_equal_its_json(key: str) -> None:
    name, cells = EXPECTED[key]
    row = dict(zip(COLUMNS, the_row(key), strict=True))
    for column, figures in cells.items():
        missing = [f for f in figures if not contains(row[column], f)]
        assert missing == [], f"{key!r} ({column}) should cite, from bench/results/{name}: {missing}"
    rest = row["figure"]
    for figure in cells["figure"]:
        rest = rest.replace(figure, "")
    assert not re.search(r"\d", rest), f"{key!r} has a figure not from bench/results/{name}: {rest!r}"


def test_every_row_is_checked_or_says_why_not() -> None:
    keys = [*EXPECTED, *UNCHECKED]
    assert [row[0] for row in benchmark_rows() if not any(row[0].startswith(k) for k in keys)] == []


def test_each_command_writes_the_file_named() -> None:
    rows = table(PAGE.read_text(encoding="utf-8"), "| rows of the table | command |")
    assert rows
    for _, command, writes, _ in rows:
        script = re.search(r"(bench/\S+\.py)", command)
        assert script, command
        result = re.fullmatch(r"`bench/results/(\w+\.json)`", writes)
        assert result, writes
        assert f'"{result[1]}"' in (ROOT / script[1]).read_text(encoding="utf-8"), (script[1], result[1])
    named = {re.sub(r"`bench/results/|`", "", row[2]) for row in rows}
    stored = {p.name for p in RESULTS.glob("*.json")}
    # generate_guidance_smollm2.json is bench_generate.py's `--out`, named in its row of the first table
    assert stored - named == {"generate_guidance_smollm2.json"}


def test_contains_a_whole_figure() -> None:
    assert contains("0% / 100%", "100%") and not contains("100%", "0%")
    assert contains("×0.96 (median", "×0.96") and not contains("×0.965", "×0.96")
    assert contains("1,148 rows/s", "1,148 rows/s") and not contains("21,148 rows/s", "1,148 rows/s")
    assert not contains("p95 23.3 s", "3.3 s")
