"""The guardrails as pure functions: thresholds, selectors, keys, cool-down, rate and blast radius."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from lakehouse.actions.engine import past_of, propose
from lakehouse.actions.guardrails import Past, screen
from lakehouse.actions.proposals import Signal, idempotency_key
from lakehouse.actions.triggers import Evidence
from tests.actions.conftest import T0, actions_config, scores

NOW = T0 + timedelta(minutes=5)


def signal(target: str, confidence: float = 1.0, minutes: int = 0, policy: str = "pause-idle-campaign") -> Signal:
    return Signal(policy, target, T0 + timedelta(minutes=minutes), confidence, "test", {})


def test_the_key_is_the_same_for_the_same_policy_target_and_window_only():
    assert idempotency_key("p", "cmp-01", T0) == idempotency_key("p", "cmp-01", T0.astimezone())
    assert len({idempotency_key("p", "cmp-01", T0), idempotency_key("p", "cmp-02", T0),
                idempotency_key("q", "cmp-01", T0), idempotency_key("p", "cmp-01", T0 + timedelta(minutes=1))}) == 4  # fmt: skip


@pytest.mark.parametrize(
    ("risk", "proposed"),
    [(0.59, False), (0.5999999, False), (0.6, True), (0.97, True)],
)
def test_below_its_confidence_threshold_a_policy_never_proposes(config, risk, proposed):
    evidence = Evidence(now=T0 + timedelta(minutes=1), scores=scores(("o-1", risk)))
    evaluation = propose(config, evidence, {}, NOW)
    assert [p.target for p in evaluation.rows] == (["o-1"] if proposed else [])
    assert evaluation.dropped == (Counter() if proposed else Counter({"review-risky-orders:below_threshold": 1}))


def test_a_target_outside_the_selector_is_never_proposed(config):
    policy = config.policy("pause-idle-campaign")
    screening = screen(policy, [signal("other-01"), signal("cmp-01")], [], NOW, 6, False)
    assert [r.target for r in screening.rows] == ["cmp-01"] and screening.dropped == {"target_not_selected": 1}


def test_a_replayed_signal_is_dropped_and_a_cooling_target_is_suppressed(config):
    policy = config.policy("pause-idle-campaign")
    first = signal("cmp-01")
    past = [Past(first.key, "cmp-01", "proposed", NOW - timedelta(minutes=30))]
    screening = screen(policy, [first, signal("cmp-01", minutes=10)], past, NOW, 6, False)
    assert screening.dropped == {"duplicate": 1}
    assert [(r.status, r.detail.split(":")[0]) for r in screening.rows] == [("suppressed", "cooldown")]


def test_rate_and_blast_radius_hold_under_a_burst_of_1000_triggers():
    config = actions_config()
    policy = config.policy("pause-idle-campaign")  # 3 an hour, half of the campaigns a day
    burst = [signal(f"cmp-{i % 40:02d}", minutes=i // 40) for i in range(1000)]
    screening = screen(policy, burst, [], NOW, known_targets=40, dry_run=False)
    assert len(screening.rows) == 1000
    assert len(screening.proposed) == 3
    assert Counter(r.detail.split(":")[0] for r in screening.suppressed) == {"rate_limit": 925, "cooldown": 72}  # 3 targets x 24 later windows cool down
    # Bursts every hour until midnight: 3 an hour, and never more than 20 of 40 campaigns a day
    # (a day-long cool-down, so that every hour wants new campaigns).
    policy = policy.model_copy(update={"cooldown": timedelta(days=1)})
    history = [Past(r.request_id, r.target, r.status, NOW) for r in screening.rows]
    proposed = [screening.proposed]
    for hour in range(1, 14):
        at = NOW + timedelta(hours=hour)
        burst = [signal(f"cmp-{i % 40:02d}", minutes=60 * hour + i // 40) for i in range(1000)]
        later = screen(policy, burst, history, at, known_targets=40, dry_run=False)
        history += [Past(r.request_id, r.target, r.status, at) for r in later.rows]
        proposed.append(later.proposed)
    assert all(len(p) <= 3 for p in proposed)
    assert len({r.target for p in proposed for r in p}) == 20
    assert "blast_radius" in {r.detail.split(":")[0] for r in later.suppressed}


def test_blast_radius_counts_distinct_targets_touched_today(config):
    policy = config.policy("pause-idle-campaign")  # max share 0.5
    today = [Past(f"k{i}", f"cmp-{i:02d}", "proposed", NOW - timedelta(hours=1)) for i in range(3)]
    screening = screen(policy, [signal("cmp-03"), signal("cmp-00", minutes=1)], today, NOW, 6, False)
    verdicts = {r.target: (r.status, (r.detail or "").split(":")[0]) for r in screening.rows}
    assert verdicts == {"cmp-03": ("suppressed", "blast_radius"), "cmp-00": ("suppressed", "cooldown")}


def test_past_of_reads_history_per_policy(config):
    import pandas as pd

    frame = pd.DataFrame([{"request_id": "k1", "policy": "p", "target": "t", "status": "proposed", "proposed_at": NOW}])
    assert past_of(frame, NOW - timedelta(days=1)) == {"p": [Past("k1", "t", "proposed", NOW)]}


def test_evidence_without_a_band_is_still_valid_json():
    """An alert's evidence can hold NaN (no expected band): the escalation's body must still
    be JSON (found in the demo: the worker could not send it and the action stayed executing)."""
    import json
    import math

    from lakehouse.actions.executors import json_safe

    body = {"custom_details": {"expected": math.nan, "upper": math.inf, "observed": 0.12, "seen": [1.0, -math.inf]}}
    assert json.loads(json.dumps(json_safe(body), allow_nan=False)) == {
        "custom_details": {"expected": None, "upper": None, "observed": 0.12, "seen": [1.0, None]}
    }
