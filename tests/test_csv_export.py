"""The one CSV writer: formula-looking text gets a leading quote (OWASP), nothing else changes."""

from __future__ import annotations

import csv
import io

import pytest

from campaign.csv_export import csv_text, neutralize


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_a_cell_that_starts_a_formula_gets_a_leading_quote(cell):
    assert neutralize(cell) == "'" + cell


@pytest.mark.parametrize(
    "cell", ["ann@example.com", "a=b", "x-1", "", "'=already quoted", -1, 2.5, None, True]
)
def test_other_cells_pass_unchanged(cell):
    assert neutralize(cell) is cell


def test_rows_as_mappings_or_sequences_and_the_header():
    text = csv_text(
        ["name", "n"],
        [{"name": "=cmd|' /C calc'!A0", "n": -3}, ['ann, "the" first', 1], {"n": 2}],
    )
    assert list(csv.reader(io.StringIO(text))) == [
        ["name", "n"],
        ["'=cmd|' /C calc'!A0", "-3"],
        ['ann, "the" first', "1"],
        ["", "2"],
    ]
