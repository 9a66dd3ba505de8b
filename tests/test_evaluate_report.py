"""The HTML report of `treasure evaluate`: structure, escaping, determinism, absent suites, Chromium."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from rich.console import Console

from treasure.errors import DataError
from treasure.evaluate.report import ReportConfig, paper_table, render_html, write_report

EVIL = '<script>alert("x")</script>'
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics() -> dict:
    """A metrics.json as `treasure evaluate` writes it, every suite present."""
    judge = "reward-model: ridge/quality.npz (tie margin 0.05)"
    return {
        "treasure_version": "0.1.0",
        "created": "2026-11-25T10:00:00Z",
        "config": {"suites": ["length_instruct", "win_rate", "adherence"], "n_prompts": 100, "seed": 7},
        "models": {
            "marked": {"path": "runs/demo/model-marked", "hash": "ab12cd34ef56ab12cd34"},
            "baseline": {"path": "runs/demo/model-baseline", "hash": "99ff88ee77dd"},
        },
        "judge": judge,
        "suites": {
            "length_instruct": {
                "rows": [
                    {
                        "name": "baseline",
                        "label": "Baseline",
                        "violation_rate": 0.366,
                        "win_rate": 0.5,
                        "n": 100,
                        "judge": judge,
                    },
                    {
                        "name": "conditioning",
                        "label": "TreasureMarked",
                        "violation_rate": 0.2,
                        "win_rate": 0.55,
                        "n": 100,
                        "judge": judge,
                    },
                    {
                        "name": "fixed",
                        "label": "+fixed",
                        "violation_rate": 0.013,
                        "win_rate": 0.6,
                        "n": 100,
                        "judge": judge,
                    },
                ],
                "limit_rule": "N = median words of the reference answers, rounded up to 10",
                "lengths": {
                    "baseline": [{"limit": 40, "words": w} for w in (55, 30, 80, 41, 12)],
                    "conditioning": [{"limit": 40, "words": w} for w in (38, 30, 44, 20)],
                    "fixed": [{"limit": 40, "words": w} for w in (25, 31, 39, 40)]
                    + [{"limit": 0, "words": 3}],
                },
            },
            "win_rate": {
                "judge": f"pairwise gpt-4o {EVIL}",
                "marked_vs_baseline": {"win": 0.4, "tie": 0.2, "loss": 0.4, "win_rate": 0.5, "n": 100},
            },
            "adherence": {
                "cells": [
                    {"marker": m, "value": v, "mode": mode, "rate": r, "n": 20}
                    for (m, v), rates in {
                        ("length_bucket", "concise"): (0.6, 0.9, 0.95),
                        ("length_bucket", "medium"): (0.4, 0.85, 0.9),
                        ("language", "fr"): (0.1, 0.7, 0.75),
                        ("task", EVIL): (0.0, 0.25, 0.3),
                        ("domain", "$x_{1}$ price ^ \\alpha"): (0.2, 0.5, 0.5),
                    }.items()
                    for mode, r in zip(("conditioning", "controlling", "strict"), rates, strict=True)
                ],
                "modes": ["conditioning", "controlling", "strict"],
                "lengths": {
                    "conditioning": {"concise": [20, 60, 90], "medium": [70, 120], "long": [150, 90]},
                    "controlling": {"concise": [12, 30, 25], "medium": [80, 95], "long": [200, 260, 180]},
                    "strict": {"concise": [], "medium": [100], "long": []},
                },
            },
            "marker_prediction": {
                "per_marker": {
                    "task": {"accuracy": 0.5, "n": 100},
                    "domain": {"accuracy": 0.42, "n": 100},
                    "language": {"accuracy": 0.97, "n": 100},
                },
                "mean_accuracy": 0.63,
            },
            "long_tail": {
                "rows": [
                    {
                        "marker": "task",
                        "bucket": b,
                        "metric": metric,
                        "marked": mk,
                        "baseline": bl,
                        "delta": round(mk - bl, 4),
                        "n": 12,
                    }
                    for metric, values in {
                        "win_rate": {"head": (0.52, 0.5), "torso": (0.56, 0.5), "tail": (0.61, 0.5)},
                        "adherence": {"head": (0.9, 0.4), "torso": (0.8, 0.35), "tail": (0.7, 0.2)},
                    }.items()
                    for b, (mk, bl) in values.items()
                ]
                + [
                    {
                        "marker": "domain",
                        "bucket": "tail",
                        "metric": "win_rate",
                        "marked": 0.45,
                        "baseline": 0.5,
                        "delta": -0.05,
                        "n": 4,
                    }
                ],
            },
            "code": {"pass_at_1": 0.0, "n": 0, "skipped": "tiny models cannot write code"},
        },
    }


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(b) for b in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def _cells(page: str, label: str) -> list[str]:
    """The cell texts of the table row whose first cell is `label`."""
    row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", page)
    assert row, f"no row {label!r}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return write_report(_metrics(), tmp_path_factory.mktemp("report"))


def test_paper_table_rows_and_sections(report: Path) -> None:
    page = report.read_text("utf-8")
    assert report.name == "report.html"
    assert page.startswith("<!DOCTYPE html>")
    assert "<h1>treasure evaluation report</h1>" in page
    assert "runs/demo/model-marked (ab12cd34ef56)" in page and "seed 7" in page and "2026-11-25" in page
    judge = "reward-model: ridge/quality.npz (tie margin 0.05)"
    assert _cells(page, "Baseline") == ["36.6%", "50.0%", "100", judge]
    assert _cells(page, "TreasureMarked") == ["20.0%", "55.0%", "100", judge]
    assert _cells(page, "+fixed") == ["1.3%", "60.0%", "100", judge]
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == [
        "Length instructions (paper table)",
        "Win rate: marked vs baseline",
        "Marker adherence",
        "Length distributions",
        "Marker prediction",
        "Long tail",
        "Code repair",
    ]
    assert "Skipped: tiny models cannot write code" in page
    assert "Mean accuracy: 63.0%" in page
    assert _cells(page, "domain")[1:6] == ["win_rate", "45.0%", "50.0%", "-5.0 pts", "4"]


def test_figures_are_valid_pngs(report: Path) -> None:
    images = _images(report.read_text("utf-8"))
    assert len(images) == 4  # adherence, lengths, marker prediction, long tail
    for blob in images:
        assert blob.startswith(PNG_MAGIC)
        pixels = matplotlib.image.imread(io.BytesIO(blob), format="png")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 300
        assert pixels[..., :3].std() > 0.05  # a drawn chart, not a blank canvas


def test_model_text_is_escaped(report: Path) -> None:
    page = report.read_text("utf-8")
    assert "<script" not in page
    assert f"Judge: pairwise gpt-4o {html.escape(EVIL)}" in page  # shown as text, never run
    metrics = _metrics()
    metrics["judge"] = EVIL
    metrics["suites"]["length_instruct"]["rows"][0]["label"] = EVIL
    metrics["suites"]["code"]["skipped"] = EVIL
    page = render_html(metrics, ReportConfig(title=EVIL))
    assert "<script" not in page
    assert (
        page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 5
    )  # title x2, summary, row, code


def test_same_metrics_same_bytes(tmp_path: Path, report: Path) -> None:
    again = write_report(_metrics(), tmp_path)
    assert again.read_bytes() == report.read_bytes()
    changed = _metrics()
    changed["suites"]["adherence"]["cells"][0]["rate"] = 0.1
    assert render_html(changed) != report.read_text("utf-8")


def test_absent_and_empty_suites(tmp_path: Path) -> None:
    metrics = _metrics()
    for name in ("adherence", "long_tail", "code", "win_rate"):
        del metrics["suites"][name]
    page = write_report(metrics, tmp_path).read_text("utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", page) == [
        "Length instructions (paper table)",
        "Length distributions",
        "Marker prediction",
    ]
    assert len(_images(page)) == 2

    empty = {
        "suites": {
            "length_instruct": {"rows": [], "lengths": {"baseline": []}},
            "win_rate": {"marked_vs_baseline": {}},
            "adherence": {"cells": [], "modes": [], "lengths": {"controlling": {"concise": []}}},
            "marker_prediction": {"per_marker": {}, "mean_accuracy": None},
            "long_tail": {"rows": []},
            "code": {"pass_at_1": None, "n": 0, "skipped": None},
        }
    }
    page = render_html(empty)
    assert len(re.findall(r"<h2>", page)) == 7
    assert not _images(page)
    assert "No rows were measured." in page and "No long-tail rows were measured." in page
    assert "No lengths were recorded." in page
    assert "holds no suite results" in render_html({})


def test_bad_number_names_the_field() -> None:
    metrics = _metrics()
    metrics["suites"]["length_instruct"]["rows"][1]["violation_rate"] = "20%"
    with pytest.raises(DataError, match=r"suites\.length_instruct\.rows\[1\]\.violation_rate"):
        render_html(metrics)


def test_paper_table_for_the_terminal() -> None:
    metrics = _metrics()
    metrics["suites"]["length_instruct"]["rows"][2]["judge"] = "[bold red]judge[/]"
    console = Console(width=140, record=True, color_system=None)
    console.print(paper_table(metrics))
    text = console.export_text()
    rows = [re.findall(r"\d+\.\d%", line) for line in text.splitlines() if "%" in line]
    assert rows == [["36.6%", "50.0%"], ["20.0%", "55.0%"], ["1.3%", "60.0%"]]
    assert "[bold red]judge[/]" in text  # shown literally, never read as markup
    assert "Baseline" in text and "TreasureMarked" in text and "+fixed" in text
    empty = Console(width=100, record=True, color_system=None)
    empty.print(paper_table({"suites": {}}))
    assert "length_instruct suite not in metrics" in empty.export_text()


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install chromium); report screenshot not taken"
        )
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", f"--screenshot={shot}",
            report.resolve().as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 20_000
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # text and figures, not a flat page
