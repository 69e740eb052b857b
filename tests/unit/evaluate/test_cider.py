"""CIDEr through pycocoevalcap: ordering of scores, tokenisation, and clear errors."""

from __future__ import annotations

import pytest

from ops.evaluate.captioning import cider_scores, normalise_caption

REFERENCES = [["a red ball moves left"], ["a blue cube moves up"], ["a green triangle moves down"]]


def test_scores_order_exact_over_partial_over_wrong():
    exact, per_item = cider_scores(["a red ball moves left", "a blue cube moves up", "a green triangle moves down"], REFERENCES)
    partial, _ = cider_scores(["a red ball moves right", "a blue cube moves down", "a green ball moves down"], REFERENCES)
    wrong, _ = cider_scores(["nothing here", "nothing at all", "empty"], REFERENCES)
    assert exact > partial > wrong == 0.0
    assert len(per_item) == 3 and min(per_item) > 0


def test_punctuation_and_case_do_not_matter_and_empty_output_scores_zero():
    assert normalise_caption("A Red, ball!  moves LEFT.") == "a red ball moves left"
    clean, _ = cider_scores(["a red ball moves left", "", "x"], REFERENCES)
    noisy, per_item = cider_scores(["A red ball, moves left!", "", "x"], REFERENCES)
    assert clean == pytest.approx(noisy) and per_item[1] == 0.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError):
        cider_scores(["one"], REFERENCES)
