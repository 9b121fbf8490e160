"""Leave-one-file-out validation is honest: nothing of a held-out file chooses its own
parameters or threshold, and the reported groups add up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluation import LabelledSeries
from models.scorer import ENSEMBLE
from models.validation import validate

pytestmark = pytest.mark.unit

POINTS = 1_000


def labelled(name: str, seed: int, at: int | None, jump: float = 40.0) -> LabelledSeries:
    """Hourly noisy KPI, with a level jump at ``at`` labelled by a NAB-like window around it."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=POINTS, freq="h", tz="UTC")
    values = 100 + rng.normal(0, 3, POINTS)
    windows = []
    if at is not None:
        values[at:] += jump
        windows = [(ts[at - 25], ts[at + 25])]
    return LabelledSeries(name, pd.DataFrame({"timestamp": ts, "value": values}), windows)


def _groups(held_out: LabelledSeries) -> dict[str, list[LabelledSeries]]:
    return {"a": [held_out, labelled("a2", 2, 700)], "b": [labelled("b1", 3, 500), labelled("b2", 4, None)]}


def test_a_held_out_file_does_not_choose_its_own_threshold() -> None:
    first = validate(ENSEMBLE, groups=_groups(labelled("a1", 1, 600)), search=False)
    # The same file, now with a second, unlabelled jump: its own scores change, its selection must not.
    changed = labelled("a1", 1, 600)
    changed.points.loc[850:, "value"] += 60.0
    second = validate(ENSEMBLE, groups=_groups(changed), search=False)
    lofo = "leave_one_file_out"
    assert first.selections[lofo]["a1"] == second.selections[lofo]["a1"]
    assert second.out_of_sample["a"]["standard"].files[0].fp >= first.out_of_sample["a"]["standard"].files[0].fp
    assert set(first.selections["leave_one_group_out"]) == {"a", "b"}
    for key in ("nab_standard_in_all", "nab_standard_oos_all", "nab_standard_logo_all", "nab_reward_low_FP_rate_oos_a"):
        assert np.isfinite(first.metrics[key])
    raw = sum(first.out_of_sample[g]["standard"].raw_score for g in ("a", "b"))
    assert raw == pytest.approx(sum(f.score for g in ("a", "b") for f in first.out_of_sample[g]["standard"].files))
