"""`evaluate.degenerate`: the answers adherence does not count as obeyed however long or in whatever
language they are (empty, a stutter, a loop), on answers the demo's model wrote."""

from __future__ import annotations

import pytest

from treasure.evaluate.degenerate import degenerate

READABLE = [
    "They rub up against your legs to keep themselves cool and dry.",
    "Volcanoes form when magma rises to the surface. The magma cools and the rock builds up over time, "
    "so a mountain grows around the vent; the heat of the magma can make it more active.",
    "La capital de Francia es París. Es una ciudad grande y bonita, con muchos museos.",
    "Die Hauptstadt von Frankreich ist Paris.",
    "1. Drink water. 2. Sleep well. 3. Walk every day.",
]


@pytest.mark.parametrize("text", READABLE)
def test_readable_answers_pass(text: str) -> None:
    assert degenerate(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("...", "empty"),
        ("Cats rub against you. Long long long long long long long long", "stutter"),
        (
            "1930-1940: The Jazz Age, The Great Gatsby, The Jazz Age, The Jazz Age, The Jazz Age, "
            "The Jazz Age",
            "loop",
        ),
        ("La cámara de la cámara de la cámara de la cámara de la casa", "loop"),
    ],
)
def test_degenerate_answers_are_named(text: str, why: str) -> None:
    assert degenerate(text) == why


def test_three_repeats_of_a_phrase_are_still_text_and_four_are_a_loop() -> None:
    three = "Drink more water. Drink more water. Drink more water. Then sleep well."
    assert degenerate(three) is None
    assert degenerate(three + " Drink more water.") == "loop"
