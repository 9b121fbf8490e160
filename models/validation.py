"""Out-of-sample validation: a recorded hyper-parameter search, leave-one-group-out NAB scores,
and the promotion gate as data.

Protocol (the promotion gate's evidence):

* the labelled series form groups (NAB realAdExchange, NAB's synthetic series, the msft
  purchase-rate series); each file is scored causally from a cold state, learning on its
  probation period (NAB's protocol);
* for each held-out group, the hyper-parameters (from a small recorded grid,
  :data:`SEARCH_SPACE`) and the detection threshold (NAB's sweep) are chosen on the *other*
  groups only, then the held-out group is scored with them: that is its out-of-sample score;
* the out-of-sample total sums the held-out raw scores of every group, normalised over all
  files with NAB's null and perfect detectors;
* in-sample scores (parameters and threshold chosen on the group itself) are reported beside
  them, never used by the gate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models import nab
from models.evaluation import (
    SHARED_DATA,
    LabelledSeries,
    load_msft_corpus,
    load_nab_corpus,
    load_synthetic_corpus,
)
from models.scorer import BASELINE, ENSEMBLE, ETS, HST, KpiScorer
from models.series import SERIES_KEY, TIMESTAMP, VALUE

GROUPS = ("realAdExchange", "synthetic", "purchase_rate")
OOS_METRIC = "nab_standard_oos_all"

# The recorded search: overrides tried on top of a family's defaults (general knobs only).
SEARCH_SPACE: dict[str, dict[str, list]] = {
    ENSEMBLE: {"tail_rate": [0.003, 0.01], "tail_quantile": [0.98, 0.995], "power": [2.0, 4.0]},
    BASELINE: {"tail_rate": [0.0, 0.01], "refractory_factor": [0.0, 0.3]},
    ETS: {"band_k": [4.0]},
    HST: {"window_size": [100, 250], "shingle": [1, 4]},
}


@dataclass(frozen=True)
class PromotionGate:
    """The promotion rule as data: which out-of-sample metric decides, by how much the
    challenger must beat the champion, and floors every challenger metric must reach."""

    metric: str = OOS_METRIC
    min_improvement: float = 0.0
    floors: dict[str, float] = field(default_factory=dict)

    def passes(self, champion: dict[str, float], challenger: dict[str, float]) -> tuple[bool, str]:
        """Whether the challenger replaces the champion, and why."""
        score = challenger.get(self.metric, float("nan"))
        if not np.isfinite(score):
            return False, f"challenger has no {self.metric}"
        for name, floor in self.floors.items():
            if not challenger.get(name, float("-inf")) >= floor:
                return False, f"challenger {name} {challenger.get(name)} below floor {floor}"
        incumbent = champion.get(self.metric, float("-inf"))
        if score > incumbent + self.min_improvement:
            return True, f"challenger {score:.2f} > champion {incumbent:.2f} + {self.min_improvement}"
        return False, f"challenger {score:.2f} <= champion {incumbent:.2f} + {self.min_improvement}"


def load_groups(data_dir: Path = SHARED_DATA) -> dict[str, list[LabelledSeries]]:
    """The labelled evaluation groups (needs the shared data)."""
    return {
        "realAdExchange": load_nab_corpus(data_dir / "nab"),
        "synthetic": load_synthetic_corpus(data_dir / "nab"),
        "purchase_rate": load_msft_corpus(data_dir / "msft-purchase-rate"),
    }


def candidates(kind: str, base: dict | None = None) -> list[dict]:
    """Every parameter set of the recorded search for a family (on top of ``base``)."""
    space = SEARCH_SPACE.get(kind, {})
    names = sorted(space)
    return [{**(base or {}), **dict(zip(names, values, strict=True))} for values in itertools.product(*(space[n] for n in names))]


def score_corpus_with_probation(scorer: KpiScorer, corpus: list[LabelledSeries]) -> dict[str, np.ndarray]:
    """Anomaly scores of every file, each scored from a cold state after learning on its
    probation rows (scored 0), all files advanced together (one series each)."""
    cold = scorer.cold_copy()
    heads, tails = [], []
    for s in corpus:
        points = s.points[[TIMESTAMP, VALUE]].reset_index(drop=True).assign(**{SERIES_KEY: s.name})
        probation = nab.probation_length(len(points))
        heads.append(points.iloc[:probation])
        tails.append(points.iloc[probation:])
    head = pd.concat(heads, ignore_index=True)
    if len(head):
        cold.fit(head)
    tail = pd.concat(tails, ignore_index=True)
    scored = cold.score(tail)
    out = {}
    for s, h, t in zip(corpus, heads, tails, strict=True):
        mask = (tail[SERIES_KEY] == s.name).to_numpy()
        out[s.name] = np.r_[np.zeros(len(h)), scored["anomaly_score"].to_numpy()[mask]]
        assert len(out[s.name]) == len(h) + len(t)
    return out


def _payload(corpus: list[LabelledSeries], scores: dict[str, np.ndarray]) -> dict:
    return {s.name: (s.points[TIMESTAMP].reset_index(drop=True), scores[s.name], s.windows) for s in corpus}


def corpus_results(
    corpus: list[LabelledSeries], scores: dict[str, np.ndarray], profiles: dict[str, nab.CostProfile], thresholds: dict[str, float] | None = None
) -> dict[str, nab.CorpusResult]:
    """NAB results per profile: threshold swept on ``corpus`` unless given per profile."""
    if thresholds is None:
        return nab.evaluate_corpus(_payload(corpus, scores), profiles)
    return {p: nab.evaluate_corpus(_payload(corpus, scores), {p: profiles[p]}, threshold=thresholds[p])[p] for p in profiles}


@dataclass
class ValidationReport:
    """In-sample and out-of-sample NAB results of one family.

    Attributes:
        kind: Model family.
        metrics: Flat metrics (``nab_<profile>_<in|oos>_<group|all>``) for MLflow and the gate.
        in_sample: Group → profile → result (parameters and threshold chosen on the group).
        out_of_sample: Group → profile → result (chosen on the other groups).
        selections: Group held out → the parameters and thresholds chosen without it.
        search: One row per (candidate, group): standard score swept on that group (the record).
        deploy_params: Parameters chosen on all groups (what a registered model uses).
        deploy_thresholds: NAB-swept thresholds on all groups with those parameters.
    """

    kind: str
    metrics: dict[str, float]
    in_sample: dict[str, dict[str, nab.CorpusResult]]
    out_of_sample: dict[str, dict[str, nab.CorpusResult]]
    selections: dict[str, dict]
    search: pd.DataFrame
    deploy_params: dict
    deploy_thresholds: dict[str, float]


def validate(
    kind: str = ENSEMBLE,
    base_params: dict | None = None,
    groups: dict[str, list[LabelledSeries]] | None = None,
    profiles: dict[str, nab.CostProfile] | None = None,
    search: bool = True,
) -> ValidationReport:
    """Leave-one-group-out validation of a family with the recorded search.

    Args:
        kind: Model family.
        base_params: Parameters the search starts from (a registered model's own).
        groups: Labelled groups (default: :func:`load_groups`).
        profiles: NAB profiles (default: NAB's three).
        search: Try the grid of :data:`SEARCH_SPACE`; ``False`` evaluates ``base_params`` only.

    Returns:
        The report (metrics, per group and file results, the search record).
    """
    groups = groups if groups is not None else load_groups()
    profiles = profiles or nab.STANDARD_PROFILES
    grid = candidates(kind, base_params) if search else [dict(base_params or {})]
    standard = {"standard": profiles["standard"]}
    scores: list[dict[str, np.ndarray]] = []
    records = []
    for i, params in enumerate(grid):
        scorer = KpiScorer.new(kind, **params)
        per_file: dict[str, np.ndarray] = {}
        for corpus in groups.values():
            per_file.update(score_corpus_with_probation(scorer, corpus))
        scores.append(per_file)
        for g, corpus in groups.items():
            records.append({"candidate": i, **params, "group": g, "standard_in": corpus_results(corpus, per_file, standard)["standard"].score})
    all_files = [s for corpus in groups.values() for s in corpus]

    def best_on(corpus: list[LabelledSeries]) -> tuple[int, dict[str, nab.CorpusResult]]:
        results = [corpus_results(corpus, sc, profiles) for sc in scores]
        best = int(np.argmax([r["standard"].raw_score for r in results]))
        return best, results[best]

    in_sample, out_of_sample, selections, metrics = {}, {}, {}, {}
    held_raw = {p: 0.0 for p in profiles}
    for g, corpus in groups.items():
        _, in_sample[g] = best_on(corpus)
        others = [s for h, c in groups.items() if h != g for s in c]
        chosen, train = best_on(others)
        thresholds = {p: r.threshold for p, r in train.items()}
        out_of_sample[g] = corpus_results(corpus, scores[chosen], profiles, thresholds)
        selections[g] = {"params": grid[chosen], "thresholds": thresholds}
        for p in profiles:
            metrics[f"nab_{p}_in_{g}"] = in_sample[g][p].score
            metrics[f"nab_{p}_oos_{g}"] = out_of_sample[g][p].score
            held_raw[p] += out_of_sample[g][p].raw_score
    chosen_all, on_all = best_on(all_files)
    for p, profile in profiles.items():
        points = [nab.sweep_weights(s.name, scores[0][s.name], nab.window_index_limits(s.points[TIMESTAMP].reset_index(drop=True), s.windows), profile) for s in all_files]
        null, perfect = nab.null_and_perfect(points, profile)
        metrics[f"nab_{p}_oos_all"] = nab.normalised(held_raw[p], null, perfect)
        metrics[f"nab_{p}_in_all"] = on_all[p].score
    return ValidationReport(
        kind, metrics, in_sample, out_of_sample, selections, pd.DataFrame(records), grid[chosen_all],
        {p: r.threshold for p, r in on_all.items()},
    )


def report_table(report: ValidationReport) -> pd.DataFrame:
    """In-sample and out-of-sample side by side: one row per profile x group x file (and the
    group totals), with alarm-episode precision and window recall."""
    rows = []
    for g in report.in_sample:
        for p in report.in_sample[g]:
            ins, oos = report.in_sample[g][p], report.out_of_sample[g][p]
            rows.append({"group": g, "profile": p, "file": "TOTAL", "in_sample": ins.score, "out_of_sample": oos.score,
                         "threshold_in": ins.threshold, "threshold_oos": oos.threshold, **_episodes(ins.files, "in"), **_episodes(oos.files, "oos")})  # fmt: skip
            for fi, fo in zip(ins.files, oos.files, strict=True):
                rows.append({"group": g, "profile": p, "file": fi.name, "in_sample": fi.score, "out_of_sample": fo.score,
                             "threshold_in": ins.threshold, "threshold_oos": oos.threshold, **_episodes([fi], "in"), **_episodes([fo], "oos")})  # fmt: skip
    return pd.DataFrame(rows)


def _episodes(files: list[nab.FileScore], tag: str) -> dict[str, float]:
    alarms = sum(f.alarms for f in files)
    windows = sum(f.windows for f in files)
    return {
        f"precision_{tag}": sum(f.true_alarms for f in files) / alarms if alarms else float("nan"),
        f"recall_{tag}": sum(f.windows_detected for f in files) / windows if windows else float("nan"),
    }


__all__ = [
    "GROUPS",
    "OOS_METRIC",
    "PromotionGate",
    "SEARCH_SPACE",
    "ValidationReport",
    "candidates",
    "load_groups",
    "report_table",
    "score_corpus_with_probation",
    "validate",
]
