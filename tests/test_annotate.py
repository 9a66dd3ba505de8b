"""Annotators (rules, language, classifier, quality, source), buckets, stats, and the annotate CLI."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest

from treasure.annotate import (
    AnnotateConfig,
    QualityConfig,
    SourceConfig,
    annotate,
    annotate_texts,
    compute_stats,
)
from treasure.annotate.accuracy import code_type_accuracy, language_accuracy
from treasure.annotate.buckets import quality_buckets, quantile_thresholds
from treasure.annotate.quality import RewardModelScorer, TrainQualityConfig, train_quality
from treasure.annotate.rules import RulesConfig, detect_format
from treasure.cli import main
from treasure.errors import MarkerError, TreasureError
from treasure.taxonomy import Taxonomy

TAX = Taxonomy.default()
FAST = ("language", "rules")


def test_lengths_count_words_sentences_paragraphs():
    [row] = annotate_texts(["q"], ["Hello there, friend. How are you?  Fine!\n\nA new paragraph here."], FAST)
    assert row["length_tokens"] == 16  # 11 words + 5 punctuation tokens, as the paper counts
    assert row["length_sentences"] == 4
    assert row["length_paragraphs"] == 2
    assert row["length_bucket"] == "concise"
    assert "format" not in row and "code_type" not in row  # plain prose: absent, not empty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "Ada", "born": 1815}', "JSON"),
        ("<note><to>Tove</to><body>Hi</body></note>", "XML"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "Tabular"),
        ("The roots are $$x = \\frac{-b}{2a}$$ here.", "Latex"),
        ("B) Paris", "MCQAnswer"),
        ("Step 1: add 2 and 3.\nStep 2: multiply by 4.\nSo the answer is 20.", "ChainOfThought"),
        ("Fruits:\n1. apple\n2. pear\n3. plum", "Enumeration"),
        ("# Title\n\nSome **bold** words.", "Markdown"),
        ("Just a plain sentence about the weather.", None),
    ],
)
def test_format_rules(text, expected):
    assert detect_format(text, RulesConfig()) == expected


def test_code_type_from_fence_alias_and_guess():
    fenced, guessed, prose = annotate_texts(
        ["a", "b", "c"],
        [
            "Run:\n```sh\nls -la\n```",
            "def add(a, b):\n    total = a + b\n    return total\n\nprint(add(1, 2))\n",
            "No code here at all, only words.",
        ],
        FAST,
    )
    assert fenced["code_type"] == "shell"  # info-string alias sh → shell
    assert guessed["code_type"] == "python"  # unfenced: Magika guess, restricted to taxonomy values
    assert "code_type" not in prose


def test_code_type_accuracy_on_humanevalpack_sample():
    report = code_type_accuracy(limit=15)
    assert report["n"] == 90
    assert report["accuracy"] >= 0.7


def test_language_detection_restricted_to_taxonomy():
    rows = annotate_texts(
        ["q"] * 3,
        [
            "El gato duerme tranquilamente en el sofá de la casa.",
            "Die Katze schläft ruhig auf dem Sofa im Wohnzimmer.",
            "猫はリビングのソファで静かに眠っています。",
        ],
        ("language",),
    )
    assert [r["language"] for r in rows] == ["Spanish", "German", "Japanese"]
    assert language_accuracy(limit=5)["accuracy"] >= 0.9


def test_given_markers_win(bundled_sample):
    ds = bundled_sample.select(range(4))
    ds = ds.add_column("task", ["Translation", None, None, None])
    ds = ds.add_column("language", ["Korean"] * 4)
    out = annotate(ds, AnnotateConfig(annotators=("language", "rules", "classifier"))).dataset
    assert out["task"][0] == "Translation"
    assert all(d in TAX["domain"].values for d in out["domain"])  # Unspecified below the threshold
    assert out["language"] == ["Korean"] * 4


def test_classifier_and_quality_on_real_rows(bundled_sample):
    result = annotate(bundled_sample, AnnotateConfig())
    out = result.dataset
    code_rows = [d for d, f in zip(out["domain"], out["file"], strict=True) if f.startswith("evol")]
    assert all(q == round(q, 2) for q in out["quality"])
    given = [q for q in bundled_sample["quality"]]
    for before, after in zip(given, out["quality"], strict=True):
        if before is not None:
            assert after == before  # a score the data carries wins
    assert set(out["domain"]) <= set(TAX["domain"].values)
    assert set(code_rows)  # domains are set for every row (Unspecified below the threshold)
    assert set(out["quality_bucket"]) <= {"1", "2", "3", "4"}
    assert result.versions["classifier"]["version"].startswith("logreg")


def test_classifier_recognises_code_fix():
    rows = annotate_texts(
        ["Fix bugs in sum_list.\n\ndef sum_list(xs):\n    total = 1\n    for x in xs:\n        total += x\n"],
        ["def sum_list(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"],
        ("classifier",),
    )
    assert rows[0]["task"] == "CodeFix"
    assert rows[0]["domain"] == "Code"


def test_quality_buckets_quartiles_within_language_ties_share():
    quality = [4.0, 3.0, 2.0, 1.0, 5.0, 5.0, 1.0, None]
    language = ["English"] * 4 + ["French"] * 3 + ["English"]
    buckets = quality_buckets(TAX, quality, language, None)
    assert buckets[:4] == ["1", "2", "3", "4"]
    assert buckets[4:7] == ["1", "1", "3"]  # ties share the better quartile; quartiles per language
    assert buckets[7] is None


def test_quantile_thresholds_and_taxonomy_file(tmp_path, sample_jsonl):
    assert quantile_thresholds(list(range(1, 301)), 3) == (101, 200)
    out = tmp_path / "out.jsonl"
    main_args = ["annotate", str(sample_jsonl), "-o", str(out), "--annotators", "language,rules"]
    with pytest.raises(SystemExit) as done:
        main([*main_args, "--quiet"])  # tertiles of the data by default
    assert done.value.code == 0
    stats = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    cuts = stats["thresholds"]["length_bucket"]
    assert Taxonomy.load(tmp_path / "out.jsonl.taxonomy.yaml")["length_bucket"].thresholds == tuple(cuts)
    shares = [v["share"] for v in stats["markers"]["length_bucket"]["values"].values()]
    assert all(0.2 <= s <= 0.45 for s in shares)  # tertiles: about a third each


def test_stats_shape_and_long_tail_buckets():
    values = ["Code"] * 90 + ["Math"] * 9 + ["Legal"]
    ds = datasets.Dataset.from_dict({"domain": values, "length_tokens": list(range(100))})
    stats = compute_stats(ds, TAX, unlabelled={"domain": 0}, rejected=2)
    domain = stats["markers"]["domain"]
    assert domain["values"]["Code"] == {"count": 90, "share": 0.9, "bucket": "head"}
    assert domain["values"]["Math"]["bucket"] == "head"
    assert domain["values"]["Legal"]["bucket"] == "torso"  # exactly 1% is not below 1%
    assert stats["markers"]["length_tokens"]["summary"] == {"min": 0, "median": 49.5, "mean": 49.5, "max": 99}
    assert stats["rejected"] == 2 and stats["n_rows"] == 100


def test_cli_writes_outputs_and_rejects_bad_rows(tmp_path, sample_jsonl, capsys):
    lines = sample_jsonl.read_text().splitlines()[:6]
    metas = [{"user_meta": {"n": i, "tags": ["a", None]}, "conversation": f"c{i}"} for i in range(6)]
    lines = [json.dumps({**json.loads(line), **meta}) for line, meta in zip(lines, metas, strict=True)]
    bad = json.loads(lines[2])
    bad["response"] = 42  # wrong type
    lines[2] = json.dumps(bad)
    lines.insert(4, json.dumps({"id": "no-response", "prompt": "hi"}))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("an earlier good output\n")
    command = ["annotate", str(src), "-o", str(out), "--source", "Human", "--quiet"]
    with pytest.raises(SystemExit) as done:
        main(command)
    assert done.value.code == 1
    expected = "set --overwrite to replace it (kept until the new one is written)"
    assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:  # 2 of 7 rows rejected: over the default 1%
        main([*command, "--overwrite"])
    assert done.value.code == 1
    assert out.read_text() == "an earlier good output\n"
    assert "2 of 7 rows rejected" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main([*command, "--overwrite", "--max-reject-rate", "0.5"])
    assert done.value.code == 0
    assert "2 input rows rejected" in capsys.readouterr().err  # said even with --quiet
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    kept = [meta for i, meta in enumerate(metas) if i != 2]
    assert [{k: r[k] for k in ("user_meta", "conversation")} for r in rows] == kept  # carried unchanged
    assert all(r["source"] == "Human" and r["language"] == "English" for r in rows)
    assert all(r["task"] in TAX["task"].values or r["task"] is None for r in rows)
    rejects = [json.loads(line) for line in (tmp_path / "out.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(3, "response"), (5, "response")]
    assert "expected text" in rejects[0]["error"] and rejects[1]["record"]["id"] == "no-response"
    stats = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    assert stats["rejected"] == 2
    assert set(stats["annotators"]) >= {"language", "rules", "classifier", "quality", "source"}
    assert not (tmp_path / "out.jsonl.work").exists()


def test_cli_rejects_unknown_annotator(tmp_path, sample_jsonl, capsys):
    with pytest.raises(SystemExit) as done:
        main(["annotate", str(sample_jsonl), "-o", str(tmp_path / "o.jsonl"), "--annotators", "rules,magic"])
    assert done.value.code == 1
    assert "unknown annotator(s) magic" in capsys.readouterr().err


def test_source_from_field_mapping(bundled_sample):
    ds = bundled_sample.select(range(3)).add_column("origin", ["oasst", "gpt", "weird"])
    config = AnnotateConfig(
        annotators=("source",),
        source=SourceConfig(from_field="origin", mapping={"oasst": "Human", "gpt": "Synthetic"}),
    )
    out = annotate(ds.remove_columns("source"), config).dataset
    assert out["source"] == ["Human", "Synthetic", None]
    with pytest.raises(MarkerError):
        annotate(ds, AnnotateConfig(annotators=("source",), source=SourceConfig(value="Alien")))


def test_reward_model_scorer_batches_and_rounds(tiny_reward_model):
    scorer = RewardModelScorer(QualityConfig(reward_model=tiny_reward_model, reward_batch_size=2))
    prompts = ["hello world", "the quick fox", "how are you", "lazy dog"]
    responses = ["fine thanks", "jumps", "good", "sleeps all day long"]
    scores = scorer.score(prompts, responses)
    alone = scorer.score(prompts[2:3], responses[2:3])
    assert len(scores) == 4 and all(s == round(s, 2) for s in scores)
    assert len(set(scores)) > 1  # the pair changes the score
    assert math.isclose(alone[0], scores[2], abs_tol=0.011)  # padding in a batch does not change it
    out = annotate(
        datasets.Dataset.from_dict({"prompt": prompts, "response": responses}),
        AnnotateConfig(annotators=("quality",), quality=QualityConfig(reward_model=tiny_reward_model)),
    ).dataset
    assert out["quality"] == scores


def test_missing_reward_model_dir_is_clear(tmp_path):
    with pytest.raises(TreasureError, match="reward model dir not found"):
        RewardModelScorer(QualityConfig(reward_model=tmp_path / "nope"))


def test_train_quality_reports_holdout_and_saves(tmp_path):
    report = train_quality(TrainQualityConfig(out=tmp_path / "q.npz", limit=120, holdout=0.25))
    assert report["n_train"] == 90 and report["n_holdout"] == 30
    assert -1 <= report["pearson"] <= 1
    weights = np.load(tmp_path / "q.npz")
    assert weights["coef"].shape == (384,)


def test_a_marker_with_one_value_in_every_row_is_warned_about_with_the_fix(caplog):
    words = ["One short answer.", "Two short answers here.", "A third, a little longer, answer text."]
    ds = datasets.Dataset.from_dict(
        {
            "id": [f"r{i}" for i in range(6)],
            "prompt": ["Say something."] * 6,
            "response": [words[i % 3] * (1 + i) for i in range(6)],
            "language": ["English", "French"] * 3,  # given: two values, no warning
            "source": ["Human"] * 6,  # one value per file is what source is for
        }
    )
    with caplog.at_level("WARNING", logger="treasure.annotate.pipeline"):
        out = annotate(ds, AnnotateConfig(annotators=("rules",), length_buckets="taxonomy")).dataset
    assert set(out["length_bucket"]) == {"concise"}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "marker length_bucket is 'concise' in all 6 rows" in lines[0]
    assert "drop `--length-buckets taxonomy`" in lines[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="treasure.annotate.pipeline"):
        out = annotate(ds, AnnotateConfig(annotators=("rules",))).dataset  # default: tertiles of the data
    assert caplog.records == [] and len(set(out["length_bucket"])) == 3


def test_source_option_switches_its_annotator_on(caplog):
    with caplog.at_level("WARNING", logger="treasure.annotate.config"):
        config = AnnotateConfig(annotators=("rules",), source=SourceConfig(value="Synthetic"))
    assert config.annotators == ("rules", "source")
    assert "--source given: running the source annotator too" in caplog.text
    ds = datasets.Dataset.from_dict(
        {"id": ["a", "b"], "prompt": ["Hi."] * 2, "response": ["Hello.", "Hey."], "language": ["English"] * 2}
    )
    assert annotate(ds, config).dataset["source"] == ["Synthetic", "Synthetic"]


def test_llm_options_without_the_llm_annotator_fail_with_the_fix(tmp_path, sample_jsonl, capsys):
    from treasure.annotate.llm import LLMConfig

    with pytest.raises(TreasureError, match=r"llm annotator is off: add llm to annotators"):
        AnnotateConfig(annotators=("rules",), llm=LLMConfig(endpoint="http://127.0.0.1:9/v1", model="m"))
    command = ["annotate", str(sample_jsonl), "-o", str(tmp_path / "o.jsonl"), "--annotators", "rules"]
    with pytest.raises(SystemExit) as done:
        main([*command, "--llm-endpoint", "http://127.0.0.1:9/v1", "--llm-model", "m", "--quiet"])
    assert done.value.code == 1
    assert "--annotators rules,llm" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_rejects_file_keeps_the_raw_record_or_line(tmp_path):
    from treasure.annotate import AnnotateFileConfig, annotate_file
    from treasure.annotate.pipeline import check_rows

    src = tmp_path / "in.jsonl"
    good = [
        {"id": f"r{i}", "prompt": "Hi.", "response": f"Hello {i}.", "language": "English"} for i in range(4)
    ]
    lines = [json.dumps(r) for r in good]
    lines.insert(2, '{"prompt": "cut off", "response": ')
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = AnnotateFileConfig(annotate=AnnotateConfig(annotators=("rules",)), max_reject_rate=0.5)
    annotated = annotate_file(src, tmp_path / "out.jsonl", config)
    [reject] = [json.loads(line) for line in annotated.rejects_file.read_text("utf-8").splitlines()]
    assert reject["line"] == 3 and reject["record"] == '{"prompt": "cut off", "response": '
    # rows dropped after reading (a prompt that is not text) keep the row as read
    ds = datasets.Dataset.from_dict(
        {
            "id": ["a", "b"],
            "prompt": ["Hi.", None],
            "response": ["Yo.", "Yo."],
            "input_columns": [None, '{"n": 1}'],
        }
    )
    kept, [bad] = check_rows(ds)
    assert len(kept) == 1 and bad.raw == {"id": "b", "response": "Yo.", "n": 1}


def test_llm_errors_name_the_options_and_the_url(tmp_path, capsys):
    with pytest.raises(TreasureError, match=r"needs an endpoint and a model: --llm-endpoint URL --llm-model"):
        AnnotateConfig(annotators=("llm",))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "Hi.", "response": "Hello.", "language": "English"}) + "\n")
    recipe = tmp_path / "annotate.yaml"
    recipe.write_text("annotate: {llm: {http_retries: 0, attempts: 1}}\n")
    dead = ["--llm-endpoint", "http://127.0.0.1:9/v1", "--llm-model", "m", "-c", str(recipe)]
    with pytest.raises(SystemExit) as done:
        main(["annotate", str(src), "-o", str(tmp_path / "o.jsonl"), "--annotators", "llm", *dead, "--quiet"])
    assert done.value.code == 1
    assert "error: http://127.0.0.1:9/v1/chat/completions: Connection error." in capsys.readouterr().err


def test_too_many_rejects_names_the_option(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Hi.", "response": "Hello."}\n{"prompt": "cut off", "response": \n')
    with pytest.raises(SystemExit) as done:
        main(["annotate", str(src), "-o", str(tmp_path / "o.jsonl"), "--annotators", "rules", "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert done.value.code == 1 and "> --max-reject-rate 1.0%" in err and "max_reject_rate" not in err
