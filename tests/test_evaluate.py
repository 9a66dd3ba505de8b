"""evaluate: limits, judges (reward model; OpenAI pairwise on a real loopback server), long-tail split,
marker prediction, resumable generation runs, and the whole `evaluate` on the session tiny models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import openai
import pytest

from fixtures_stub import Stub
from treasure.cli import main
from treasure.errors import DataError, TreasureError
from treasure.evaluate import EvalConfig, JudgeConfig, evaluate, resolve
from treasure.evaluate.judge import VERDICT_FORMAT, OpenAIJudge, RewardModelJudge
from treasure.evaluate.prompts import EvalPrompt, alpaca_eval, sample, user_prompts
from treasure.evaluate.runs import GenerationRuns
from treasure.evaluate.suites.length_instruct import INSTRUCTION, _outcome, extra_rows, limits, words
from treasure.evaluate.suites.long_tail import bucket_of, split_rows
from treasure.evaluate.suites.marker_prediction import run_marker_prediction
from treasure.generate import GenerationConfig

STATS = {
    "markers": {
        "task": {
            "values": {
                "QuestionAnswering": {"count": 500, "share": 0.5, "bucket": "head"},
                "Summarization": {"count": 30, "share": 0.03, "bucket": "torso"},
                "CodeFix": {"count": 5, "share": 0.005, "bucket": "tail"},
            }
        }
    }
}


def test_alpaca_eval_prompts_and_seeded_sample():
    pool = alpaca_eval()
    assert len(pool) == 805 and all(p.reference for p in pool)
    assert sample(pool, 10, seed=1) == sample(pool, 10, seed=1)
    assert sample(pool, 10, seed=1) != sample(pool, 10, seed=2)
    assert len(sample(pool, 2000, seed=0)) == 805


def test_limits_follow_reference_scale_clip_and_seeded_range():
    config = EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites=("adherence",), limit_clip=(5, 50))
    prompts = [EvalPrompt("a", "p", "w " * 40), EvalPrompt("b", "p", "w " * 400), EvalPrompt("c", "p", "w")]
    assert limits(prompts, config, scale=0.5) == [20, 50, 5]
    free = [EvalPrompt(str(i), "p") for i in range(50)]
    drawn = limits(free, config, scale=1.0)
    assert drawn == limits(free, config, scale=1.0)
    assert all(10 <= n <= 100 for n in drawn) and len(set(drawn)) > 5
    assert words("one two  three\nfour") == 4
    assert INSTRUCTION.format(n=7) == "Answer the following instruction using 7 words or less."


def test_over_the_limit_loses_whatever_the_judge_says():
    assert _outcome(1.0, first_over=True, second_over=False) == 0.0
    assert _outcome(0.0, first_over=False, second_over=True) == 1.0
    assert _outcome(0.5, first_over=True, second_over=True) == 0.5


def test_suite_names_and_baseline_requirement():
    config = EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites="marker_prediction,adherence")
    assert config.suites == ("marker-prediction", "adherence")
    assert [s.name for s in resolve(config)] == ["marker-prediction", "adherence"]
    with pytest.raises(TreasureError, match="compare against a baseline"):
        resolve(EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites=("length-instruct",)))
    with pytest.raises(TreasureError, match="unknown suite"):
        evaluate(EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites="lenght"))  # before any work


def test_user_prompts_reference_field_errors_name_line(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "prompt": "Hi", "response": "Hello"}\n{"prompt": "Yo", "response": 3}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'response'"):
        user_prompts(path)
    path.write_text('{"id": "x", "prompt": "Hi", "response": "Hello"}\n{"prompt": "Yo"}\n')
    assert [(p.id, p.reference) for p in user_prompts(path)] == [("x", "Hello"), ("2", None)]
    path.write_text('{"prompt": "Hi"}\n{"prompt": "Yo", "markers": {"length_bucket": "concise"}}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'markers': evaluate sets markers per suite"):
        user_prompts(path)  # never silently ignored


def test_reward_model_judge_ties_identical_and_is_antisymmetric():
    judge = RewardModelJudge(JudgeConfig(tie_margin=0.02))
    prompts = [p.prompt for p in alpaca_eval()[:8]]
    references = [p.reference for p in alpaca_eval()[:8]]
    short = [r.split(".")[0] for r in references]
    assert judge.compare(prompts, references, references) == [0.5] * 8
    forward, backward = judge.compare(prompts, references, short), judge.compare(prompts, short, references)
    assert [a + b for a, b in zip(forward, backward, strict=True)] == [1.0] * 8
    assert judge.outcomes([1.0, 1.0, 1.0], [1.01, 2.0, 0.0]) == [0.5, 0.0, 1.0]
    assert "reward-model: ridge/quality.npz" in judge.name


@pytest.mark.slow
def test_openai_judge_both_orders_invalid_counted_and_cached(llm_endpoint, tmp_path: Path, monkeypatch):
    base_url, key = llm_endpoint
    monkeypatch.setenv("JUDGE_KEY", key)
    config = JudgeConfig(
        kind="openai", endpoint=base_url, model="tiny", api_key_env="JUDGE_KEY", max_retries=1, concurrency=2
    )
    judge = OpenAIJudge(config, tmp_path / "cache")
    outcomes = judge.compare(["Say A or B.", "Which?"], ["a", "x"], ["b", "y"])
    assert all(o in (0.0, 0.25, 0.5, 0.75, 1.0) for o in outcomes)
    first = dict(judge.counts)
    # 2 pairs × 2 orders × (1 + max_retries) attempts at most; nonsense replies are invalid → ties
    assert 4 <= first["requests"] <= 8
    assert first["invalid"] == 4 - sum(1 for _ in range(0))  # the random model never answers a verdict
    again = judge.compare(["Say A or B.", "Which?"], ["a", "x"], ["b", "y"])
    assert again == outcomes and judge.counts["requests"] == first["requests"]
    assert judge.counts["cached"] == first["requests"]


def test_openai_judge_reads_structured_verdicts_and_falls_back_to_plain(stub: Stub, tmp_path: Path):
    stub.reply = lambda body: '{"verdict": "A"}' if "response_format" in body else "B"
    config = JudgeConfig(kind="openai", endpoint=stub.url, model="m", max_retries=0, concurrency=1)
    judge = OpenAIJudge(config, tmp_path / "structured")
    assert judge.compare(["p"], ["x"], ["y"]) == [0.5]  # A in both orders: a tie
    assert stub.seen[0][1]["response_format"] == VERDICT_FORMAT and judge.counts["invalid"] == 0

    stub.reject_format = True
    judge = OpenAIJudge(config, tmp_path / "plain")
    assert judge.compare(["p"], ["x"], ["y"]) == [0.5]  # B in both orders, plain after the fallback
    assert judge.counts["structured_fallbacks"] == 1 and judge.counts["invalid"] == 0
    assert judge.counts["requests"] == 3


def test_openai_judge_http_retries_reach_the_client(stub: Stub, tmp_path: Path):
    stub.reply = lambda body: "A"
    stub.script = [503, 503]
    config = JudgeConfig(kind="openai", endpoint=stub.url, model="m", http_retries=2, max_retries=0)
    judge = OpenAIJudge(config, tmp_path / "retried")
    assert judge.compare(["p"], ["x"], ["y"]) == [0.5]  # A in both orders, after two 503s
    assert judge.counts["retries"] == 2 and judge.counts["invalid"] == 0

    stub.script = [503]
    config = JudgeConfig(kind="openai", endpoint=stub.url, model="m", http_retries=0, max_retries=2)
    with pytest.raises(openai.InternalServerError):  # re-asking for a verdict is not an HTTP retry
        OpenAIJudge(config, tmp_path / "not-retried").compare(["q"], ["x"], ["y"])


def test_long_tail_split_and_unseen_values_are_tail():
    assert bucket_of(STATS, "task", "CodeFix") == "tail"
    assert bucket_of(STATS, "task", "NeverSeen") == "tail"
    assert bucket_of(STATS, "task", None) is None
    labels = [{"task": "QuestionAnswering"}, {"task": "QuestionAnswering"}, {"task": "CodeFix"}, {}]
    rows = split_rows("win_rate", [1.0, 0.0, 1.0, 1.0], [0.5] * 4, labels, ["task"], STATS)
    assert rows == [
        {"marker": "task", "bucket": "head", "metric": "win_rate", "marked": 0.5, "baseline": 0.5,
         "delta": 0.0, "n": 2},
        {"marker": "task", "bucket": "tail", "metric": "win_rate", "marked": 1.0, "baseline": 0.5,
         "delta": 0.5, "n": 1},
    ]  # fmt: skip


def test_marker_prediction_counts_missing_as_wrong():
    written = [{"task": "QuestionAnswering"}, {}, {"task": "Summarization"}]
    labels = [{"task": "QuestionAnswering"}, {"task": "QuestionAnswering"}, {}]
    result = run_marker_prediction(written, labels, ["task", "domain"])
    assert result["per_marker"] == {"task": {"accuracy": 0.5, "n": 2}}


def test_extra_length_instruct_rows_and_guidance_scales_config():
    config = EvalConfig(model_dir=Path("m"), out_dir=Path("o"), guidance_scales=(2, 1.5))
    assert config.guidance_scales == (2.0, 1.5)
    rows = extra_rows(config)
    assert [(name, label) for name, label, _ in rows] == [
        ("fixed-budget", "+fixed +budget"), ("fixed-g2", "+fixed G=2"), ("fixed-g1.5", "+fixed G=1.5")
    ]  # fmt: skip
    assert [(g.length_budget, g.guidance) for _, _, g in rows] == [(True, 1.0), (False, 2.0), (False, 1.5)]
    assert all(g.max_new_tokens == config.generation.max_new_tokens for _, _, g in rows)
    off = EvalConfig(model_dir=Path("m"), out_dir=Path("o"), length_budget_row=False)
    assert extra_rows(off) == []
    with pytest.raises(TreasureError, match="guidance_scales has a scale twice"):
        EvalConfig(model_dir=Path("m"), out_dir=Path("o"), guidance_scales=(2.0, 2))
    with pytest.raises(TreasureError, match="guidance must be in"):
        EvalConfig(model_dir=Path("m"), out_dir=Path("o"), guidance_scales=(-1.0,))
    with pytest.raises(TreasureError, match="needs the transformers backend, not vllm"):
        EvalConfig(model_dir=Path("m"), out_dir=Path("o"), guidance_scales=(2.0,), backend="vllm")
    EvalConfig(model_dir=Path("m"), out_dir=Path("o"), guidance_scales=(2.0,), backend="auto")
    with pytest.raises(TreasureError, match="backend 'vlm': one of transformers, vllm, auto"):
        EvalConfig(model_dir=Path("m"), out_dir=Path("o"), backend="vlm")


@pytest.mark.parametrize("installed", [True, False])
def test_auto_backend_is_vllm_where_installed_except_for_guidance(
    installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from treasure.backends import pick_backend

    monkeypatch.setattr("treasure.backends.vllm_installed", lambda: installed)
    plain, guided = GenerationConfig(), GenerationConfig(guidance=1.5)
    assert pick_backend("auto", plain) == ("vllm" if installed else "transformers")
    assert pick_backend("auto", replace(plain, length_budget=True)) == pick_backend("auto", plain)
    assert pick_backend("auto", guided) == "transformers"
    assert pick_backend("transformers", plain) == "transformers" and pick_backend("vllm", guided) == "vllm"


def test_generation_run_key_holds_guidance_and_budget(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    config = GenerationConfig(max_new_tokens=8, temperature=0.0)
    runs = GenerationRuns({"m": tmp_path}, tmp_path / "cache", config, progress=False)
    keys = {
        runs.key("m", ["p"], "fixed", [None], False, c, "transformers")
        for c in (
            config,
            replace(config, guidance=2.0),
            replace(config, guidance=3.0),
            replace(config, length_budget=True),
            replace(config, guidance=2.0, length_budget=True),
        )
    }
    assert len(keys) == 5
    assert runs.key("m", ["p"], "fixed", [None], False, config, "vllm") not in keys
    assert (
        runs.key("m", ["p"], "fixed", [None], False, replace(config), "transformers") in keys
    )  # a function of the values


@pytest.mark.slow
def test_generation_runs_resume_after_a_cut_line(random_model_dir: Path, tmp_path: Path):
    config = GenerationConfig(max_new_tokens=8, temperature=0.0, batch_size=2)
    prompts = ["one", "two", "three", "four", "five"]
    runs = GenerationRuns({"m": random_model_dir}, tmp_path, config, progress=False)
    full = runs.run("r", "m", prompts)
    cache = tmp_path / "r.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:5])  # a crash mid-write
    calls = []
    original = runs.generator("m").generate
    runs.generator("m").generate = lambda p, *a, **k: calls.append(list(p)) or original(p, *a, **k)
    assert runs.run("r", "m", prompts) == full
    assert calls == [["four", "five"]]  # finished batches were not redone
    calls.clear()
    assert len(runs.run("r", "m", prompts[:2])) == 2 and calls == [["one", "two"]]  # new key: start over


@pytest.mark.slow
def test_evaluate_end_to_end_on_tiny_models(tiny_model_dir: Path, tiny_baseline_dir: Path, tmp_path: Path):
    out = tmp_path / "report"
    config = EvalConfig(
        model_dir=tiny_model_dir,
        baseline_dir=tiny_baseline_dir,
        out_dir=out,
        n_prompts=6,
        n_adherence_prompts=3,
        generation=GenerationConfig(max_new_tokens=48, temperature=0.0, batch_size=8),
        progress=False,
    )
    metrics = evaluate(config)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["suites"].keys() == metrics["suites"].keys() == {
        "length_instruct", "win_rate", "adherence", "marker_prediction", "long_tail"
    }  # fmt: skip
    li = saved["suites"]["length_instruct"]
    assert [r["name"] for r in li["rows"]] == ["baseline", "conditioning", "fixed", "fixed-budget"]
    for row in li["rows"]:
        lengths = li["lengths"][row["name"]]
        assert row["n"] == len(lengths) == 6
        assert row["violation_rate"] == round(sum(x["words"] > x["limit"] for x in lengths) / 6, 4)
        assert 0.0 <= row["win_rate"] <= 1.0
    assert li["rows"][0]["win_rate"] == 0.5
    assert li["fixed_marker_set"] == 1.0  # every "+fixed" prompt had its sentence turned into a marker
    cells = saved["suites"]["adherence"]["cells"]
    assert len(cells) == 9 and {c["mode"] for c in cells} == {"conditioning", "controlling", "strict"}
    assert all(c["n"] == 3 and 0 <= c["rate"] <= 1 for c in cells)
    assert all(0 <= c["readable_rate"] <= c["rate"] for c in cells)  # readable hits are hits
    assert saved["models"]["marked"]["hash"] != saved["models"]["baseline"]["hash"]
    assert (out / "report.html").is_file()
    generated = sorted(p.name for p in (out / "generations").glob("*.jsonl"))
    assert {"li-fixed.jsonl", "li-fixed-budget.jsonl", "plain-baseline.jsonl"} <= set(generated)
    # a second run reuses every cached generation and gives the same numbers
    again = evaluate(config)
    assert again["suites"] == metrics["suites"]


def test_cli_evaluate_errors_clearly(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "none"), "-o", str(tmp_path / "r")])
    assert exit_info.value.code == 1
    assert "set --baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "none"), "--suites", "adherence", "-o", str(tmp_path / "r")])
    assert exit_info.value.code == 1
    assert "model dir not found" in capsys.readouterr().err


@pytest.mark.slow
def test_budget_and_guidance_rows_on_tiny_models(
    tiny_model_dir: Path, tiny_baseline_dir: Path, tmp_path: Path
):
    out = tmp_path / "report"
    config = EvalConfig(
        model_dir=tiny_model_dir,
        baseline_dir=tiny_baseline_dir,
        out_dir=out,
        suites="length-instruct,adherence",
        n_prompts=6,
        n_adherence_prompts=2,
        adherence_modes=("controlling",),
        guidance_scales=(2.0,),
        limit_scale=0.02,  # limits of 5 to 10 words: +fixed goes over some (3 of 6 when measured), so the
        # budget has work to do
        generation=GenerationConfig(max_new_tokens=64, temperature=0.0, batch_size=8),
        progress=False,
    )
    metrics = evaluate(config)
    li = metrics["suites"]["length_instruct"]
    assert [(r["name"], r["label"]) for r in li["rows"]] == [
        ("baseline", "Baseline"), ("conditioning", "TreasureMarked"), ("fixed", "+fixed"),
        ("fixed-budget", "+fixed +budget"), ("fixed-g2", "+fixed G=2"),
    ]  # fmt: skip
    budget = li["lengths"]["fixed-budget"]
    assert len(budget) == 6 and all(x["words"] <= x["limit"] for x in budget)  # the budget's guarantee
    assert li["rows"][3]["violation_rate"] == 0.0
    generations = out / "generations"
    for name in ("fixed-budget", "fixed-g2"):
        answers = [json.loads(line)["response"] for line in (generations / f"li-{name}.jsonl").open()]
        assert [words(a) for a in answers] == [x["words"] for x in li["lengths"][name]]
    keys = {(generations / f"li-{n}.key").read_text() for n in ("fixed", "fixed-budget", "fixed-g2")}
    assert len(keys) == 3  # same prompts and mode: the decoding options tell the runs apart
    adherence = metrics["suites"]["adherence"]
    assert adherence["modes"] == ["conditioning", "controlling", "controlling G=2"]
    cells = adherence["cells"]
    assert [c["mode"] for c in cells if c["value"] == "concise"] == adherence["modes"]
    assert len(cells) == 9 and all(c["n"] == 2 for c in cells)
    assert (generations / "adh-controlling-g2-length_bucket-concise.jsonl").is_file()
    assert {a["mode"] for a in adherence["examples"][0]["answers"]} == set(adherence["modes"])
    page = (out / "report.html").read_text("utf-8")
    assert "<td>+fixed +budget</td>" in page and "<td>+fixed G=2</td>" in page


def test_adherence_markers_are_checked_before_any_weights_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from treasure.errors import MarkerError
    from treasure.taxonomy import Taxonomy

    def no_weights(*args: object, **kwargs: object) -> None:
        raise RuntimeError("weights would load here")

    monkeypatch.setattr("treasure.generate.load_backend", no_weights)
    model = tmp_path / "model"
    model.mkdir()
    Taxonomy.default().save(model / "taxonomy.yaml")
    report = {"config": {"markers": ["length_bucket"]}, "n_train": 10, "n_validation": 1}
    (model / "build.json").write_text(json.dumps(report), encoding="utf-8")
    config = EvalConfig(model_dir=model, out_dir=tmp_path / "report", suites=("adherence",))
    with pytest.raises(
        MarkerError, match=r"adherence_markers: invalid value 'huge'.*valid: concise, medium, long"
    ):
        evaluate(replace(config, adherence_markers={"length_bucket": ("concise", "huge")}))
    with pytest.raises(
        MarkerError, match=r"not trained with marker\(s\) language; trained markers: length_bucket"
    ):
        evaluate(replace(config, adherence_markers={"language": ("French",)}))
    assert not (tmp_path / "report").exists()  # nothing written before the check
    with pytest.raises(RuntimeError, match="weights would load here"):  # valid ones get that far
        evaluate(config)
