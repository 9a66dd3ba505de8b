"""Taxonomy: the default 13 categories, YAML validation (every problem, with its key), extends, save/load."""

from __future__ import annotations

import textwrap

import pytest

from treasure.errors import MarkerError, TaxonomyError
from treasure.taxonomy import Taxonomy, with_thresholds


def _write(tmp_path, text: str, name: str = "tax.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_default_has_the_papers_13_categories_with_kinds():
    tax = Taxonomy.default()
    assert tax.names == [
        "task",
        "domain",
        "language",
        "code_type",
        "format",
        "style",
        "source",
        "length_tokens",
        "length_sentences",
        "length_paragraphs",
        "length_bucket",
        "quality",
        "quality_bucket",
    ]
    kinds = {n: tax[n].kind for n in tax.names}
    assert kinds["length_bucket"] == kinds["quality_bucket"] == "ordinal"
    assert kinds["quality"] == "float" and kinds["length_tokens"] == "integer"
    assert len(tax["task"].values) == 14 and len(tax["language"].values) == 23
    assert not tax["source"].user_settable and not tax["quality"].user_settable
    assert tax["length_bucket"].thresholds == (300, 1000)


@pytest.mark.parametrize(
    ("number", "bucket"),
    [(0, "concise"), (299, "concise"), (300, "medium"), (1000, "medium"), (1001, "long"), (10**6, "long")],
)
def test_bucket_of_boundaries(number, bucket):
    assert Taxonomy.default()["length_bucket"].bucket_of(number) == bucket


def test_bucket_of_with_explicit_thresholds_and_without_any():
    tax = Taxonomy.default()
    assert tax["length_bucket"].bucket_of(54, (54, 160)) == "medium"
    assert tax["length_bucket"].bucket_of(53.9, (54, 160)) == "concise"
    with pytest.raises(MarkerError, match="needs 3 thresholds, has 0"):
        tax["quality_bucket"].bucket_of(0.5)


def test_canonical_is_case_insensitive_and_lists_valid_values():
    tax = Taxonomy.default()
    assert tax.canonical("language", " sPaNiSh ") == "Spanish"
    assert tax.canonical("quality_bucket", 2) == "2"
    assert tax.canonical("length_tokens", "42") == 42 and tax.canonical("quality", "4.5") == 4.5
    with pytest.raises(MarkerError, match="valid: English, French"):
        tax.canonical("language", "Klingon")
    with pytest.raises(MarkerError, match="unknown marker 'colour'; valid: code_type"):
        tax.canonical("colour", "red")


def test_user_markers_checks_user_settable():
    tax = Taxonomy.default()
    assert tax.user_markers({"task": "rewrite", "domain": None}) == {"task": "Rewrite"}
    with pytest.raises(MarkerError, match="'source' cannot be set at inference"):
        tax.user_markers({"source": "Human"})


def test_every_problem_is_reported_at_once_with_its_key(tmp_path):
    path = _write(
        tmp_path,
        """
        version: 2
        colour: red
        markers:
          Bad-Name: {kind: categorical, values: [a]}
          tone: {kind: weird}
          mood: {kind: categorical, values: [Happy, happy, "a<b"]}
          size: {kind: integer, values: [1, 2], minimum: low}
          level: {kind: ordinal, values: [lo, hi], thresholds: [1, 2, 3], of: nothing}
          order: {kind: ordinal, values: [a, b, c], thresholds: [5, 1]}
          flag: {kind: categorical, values: [x], user_settable: maybe, colour: blue}
          cut: {kind: categorical, values: [x], thresholds: 7}
          empty: 3
        """,
    )
    with pytest.raises(TaxonomyError) as info:
        Taxonomy.load(path)
    problems = info.value.problems
    expected = [
        "version: only version 1",
        "colour: unknown top-level key",
        "markers.Bad-Name: name must be lower_snake_case",
        "markers.tone.kind: must be one of",
        "markers.mood.values: 'happy' appears more than once",
        "markers.mood.values: 'a<b' may not contain",
        "markers.size.values: integer markers take minimum/maximum",
        "markers.size.minimum: must be a number",
        "markers.level.thresholds: 2 values need 1 thresholds, got 3",
        "markers.order.thresholds: must be ascending",
        "markers.flag.user_settable: must be true or false",
        "markers.flag.colour: unknown key",
        "markers.cut.thresholds: must be a list",
        "markers.empty: must be a mapping",
    ]
    for part in expected:
        assert sum(part in p for p in problems) == 1, (part, problems)
    assert all(p.startswith(f"{path}: ") for p in problems)
    assert len(problems) == len(expected)


def test_references_must_name_markers_of_the_right_kind(tmp_path):
    path = _write(
        tmp_path,
        """
        extends: default
        markers:
          length_bucket: {of: style}
          quality_bucket: {within: nothing}
        """,
    )
    with pytest.raises(TaxonomyError) as info:
        Taxonomy.load(path)
    assert len(info.value.problems) == 2
    assert (
        "markers.length_bucket.of: 'style' is categorical, must be integer or float" in info.value.problems[0]
    )
    assert "markers.quality_bucket.within: unknown marker 'nothing'" in info.value.problems[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "top level must be a mapping"),
        ("markers: {}", "markers: must be a non-empty mapping"),
        ("extends: other\nmarkers: {}", "only 'default' can be extended"),
        ("markers: {a: [unclosed", "not valid YAML"),
    ],
)
def test_top_level_errors(tmp_path, text, message):
    with pytest.raises(TaxonomyError, match=message):
        Taxonomy.load(_write(tmp_path, text))


def test_missing_file_is_a_taxonomy_error(tmp_path):
    with pytest.raises(TaxonomyError, match="file not found"):
        Taxonomy.load(tmp_path / "nope.yaml")


def test_extends_default_makes_every_kind_of_change(tmp_path):
    path = _write(
        tmp_path,
        """
        extends: default
        markers:
          tone:                          # a new category
            kind: categorical
            values: [Warm, Neutral, Blunt]
            annotator: llm
          task:
            add_values: [Poetry]
            remove_values: [CodeFix, CodeTranslation]
          length_bucket:
            thresholds: [100, 400]       # new bucket thresholds
          source:
            user_settable: true          # now users may set it
          style: null                    # drop an inherited category
        """,
    )
    tax = Taxonomy.load(path)
    default = Taxonomy.default()
    assert tax["tone"].values == ("Warm", "Neutral", "Blunt") and tax["tone"].annotator == "llm"
    assert "Poetry" in tax["task"].values and "CodeFix" not in tax["task"].values
    assert len(tax["task"].values) == len(default["task"].values) - 1
    assert tax["length_bucket"].bucket_of(150) == "medium" and tax["length_bucket"].bucket_of(401) == "long"
    assert tax["source"].user_settable
    assert "style" not in tax
    assert tax["domain"] == default["domain"]
    assert tax.content_hash() != default.content_hash()


def test_extends_errors_name_the_key(tmp_path):
    path = _write(
        tmp_path,
        """
        extends: default
        markers:
          task: {add_values: Poetry, remove_values: [Nope]}
          length_bucket: {add_values: [huge]}
        """,
    )
    with pytest.raises(TaxonomyError) as info:
        Taxonomy.load(path)
    assert info.value.problems == [
        f"{path}: markers.task.add_values: must be a list",
        f"{path}: markers.task.remove_values: 'Nope' is not a value of 'task'",
        f"{path}: markers.length_bucket.thresholds: 4 values need 3 thresholds, got 2",
    ]


def test_extends_without_changes_equals_default(tmp_path):
    tax = Taxonomy.load(_write(tmp_path, "extends: default\n"))
    assert tax.content_hash() == Taxonomy.default().content_hash()


def test_save_load_round_trip_keeps_content_hash(tmp_path):
    tax = with_thresholds(Taxonomy.default(), "length_bucket", (54.5, 160))
    path = tax.save(tmp_path / "model" / "taxonomy.yaml")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# treasure taxonomy, content hash sha256:{tax.content_hash()}\n")
    assert "extends" not in text
    loaded = Taxonomy.load(path)
    assert loaded == tax and loaded.content_hash() == tax.content_hash()
    assert loaded["length_bucket"].bucket_of(100) == "medium"
    assert not list(path.parent.glob("*.tmp"))


def test_content_hash_ignores_yaml_formatting(tmp_path):
    compact = _write(tmp_path, "markers: {tone: {kind: categorical, values: [A, B]}}\n", "a.yaml")
    spread = _write(
        tmp_path,
        "# comment\nversion: 1\nmarkers:\n  tone:\n    values:\n      - A\n      - B\n"
        "    kind: categorical\n",
        "b.yaml",
    )
    assert Taxonomy.load(compact).content_hash() == Taxonomy.load(spread).content_hash()


def test_with_thresholds_validates_and_converts_numpy():
    np = pytest.importorskip("numpy")
    tax = with_thresholds(Taxonomy.default(), "length_bucket", (np.int64(54), np.float64(160.5)))
    assert tax["length_bucket"].thresholds == (54, 160.5)
    assert type(tax["length_bucket"].thresholds[0]) is int
    for bad, message in [((5, 1), "ascending"), ((1, 2, 3), "need 2 thresholds")]:
        with pytest.raises(TaxonomyError, match=message):
            with_thresholds(Taxonomy.default(), "length_bucket", bad)
    with pytest.raises(TaxonomyError, match="only ordinal"):
        with_thresholds(Taxonomy.default(), "task", (1,))
