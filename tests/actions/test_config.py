"""``conf/actions.yaml`` loads; a mistake in it is refused when loaded, not when acting."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from lakehouse.accounts import accounts_path
from lakehouse.actions.config import load_actions_config, parse_actions_config
from lakehouse.config import settings


def test_the_shipped_policies_and_accounts_load():
    config = load_actions_config()
    assert {p.action for p in config.policies} == {"pause_campaign", "adjust_bid", "surface_product", "queue_refund_review", "escalate_incident"}
    assert {p.trigger.kind for p in config.policies} == {"rule", "alert", "model_score"}
    # One set of people and roles: the worker reads the app's account file.
    assert config.accounts_path(environ={}) == accounts_path(settings())


BASE = {"name": "p", "trigger": {"kind": "alert", "kpi": "orders"}, "action": "pause_campaign"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "delete_shop"}, "action"),
        ({"trigger": {"kind": "horoscope"}}, "trigger"),
        ({"trigger": {"kind": "rule", "rule": "moon_phase"}}, "rule"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"limits": {"max_share_per_day": 2}}, "max_share_per_day"),
        ({"cooldown": "soon"}, "invalid duration"),
        ({"surprise": True}, "surprise"),
        ({"action": "adjust_bid", "params": {"step_pct": -10, "min_bid": 3, "max_bid": 1}}, "min_bid <= max_bid"),
    ],
)
def test_a_bad_policy_is_refused_on_load(change: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        parse_actions_config({"policies": [{**BASE, **change}]})


def test_policy_names_are_unique_and_an_unknown_one_is_named():
    with pytest.raises(ValidationError, match="unique"):
        parse_actions_config({"policies": [BASE, BASE]})
    with pytest.raises(KeyError, match="unknown policy 'nope'"):
        parse_actions_config(yaml.safe_load("policies: []")).policy("nope")
