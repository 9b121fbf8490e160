"""Out-of-sample validation: a recorded hyper-parameter search, leave-one-file-out (and
leave-one-group-out) NAB scores, and the promotion gate as data.

Protocol (the promotion gate's evidence):

* the labelled series form groups (NAB realAdExchange, NAB's synthetic series, the msft
  purchase-rate series); each file is scored causally from a cold state, learning on its
  probation period (NAB's protocol);
* leave-one-file-out (the gate's ``oos`` metrics): for each file, the hyper-parameters (from
  a small recorded grid, :data:`SEARCH_SPACE`) and each profile's threshold (NAB's sweep) are
  chosen on *all other* files, then the file is scored with them; a group's out-of-sample
  score sums its files' raw scores, normalised with NAB's null and perfect detectors;
* leave-one-group-out (``logo``, stricter: a whole kind of series unseen) is reported beside it;
* in-sample scores (parameters and threshold chosen on the scored files themselves) are
  reported too, never used by the gate.
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
    ENSEMBLE: {"likelihood_short_rate": [0.2, 0.3], "cusum_limit": [8.0, 10.0], "suppress_points": [24, 36]},
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
        metrics: Flat metrics ``nab_<profile>_<in|oos|logo>_<group|all>`` for MLflow and the
            gate: ``in`` in sample, ``oos`` leave-one-file-out (the gate's), ``logo``
            leave-one-group-out.
        in_sample: Group → profile → result (parameters and threshold chosen on the group).
        out_of_sample: Group → profile → result, leave-one-file-out (each file scored with the
            parameters and threshold chosen on every other file).
        leave_one_group_out: Group → profile → result (chosen on the other groups).
        selections: ``{"leave_one_file_out": {file: …}, "leave_one_group_out": {group: …}}``:
            the parameters and thresholds chosen without the held-out part.
        search: One row per (candidate, group): standard score swept on that group (the record).
        deploy_params: Parameters chosen on all groups (what a registered model uses).
        deploy_thresholds: NAB-swept thresholds on all groups with those parameters.
    """

    kind: str
    metrics: dict[str, float]
    in_sample: dict[str, dict[str, nab.CorpusResult]]
    out_of_sample: dict[str, dict[str, nab.CorpusResult]]
    leave_one_group_out: dict[str, dict[str, nab.CorpusResult]]
    selections: dict[str, dict]
    search: pd.DataFrame
    deploy_params: dict
    deploy_thresholds: dict[str, float]


@dataclass
class _Scored:
    """NAB sweep weights of every file for every (candidate, profile): scored once, swept often."""

    points: list[dict[str, dict[str, nab.ScoredPoints]]]  # candidate -> profile -> file
    profiles: dict[str, nab.CostProfile]
    group_of: dict[str, str]  # file -> its group

    def sweep(self, candidate: int, profile: str, files: list[str]) -> tuple[float, float]:
        """Threshold (and score) chosen on ``files``: the mean of their groups' normalised
        scores, each group counting once (:func:`models.nab.sweep_groups`)."""
        groups: dict[str, list[nab.ScoredPoints]] = {}
        for f in files:
            groups.setdefault(self.group_of[f], []).append(self.points[candidate][profile][f])
        return nab.sweep_groups(list(groups.values()), self.profiles[profile])

    def best_candidate(self, files: list[str]) -> int:
        """The candidate with the best standard score swept on ``files`` (first on ties)."""
        return int(np.argmax([self.sweep(c, "standard", files)[1] for c in range(len(self.points))]))

    def file_score(self, candidate: int, profile: str, file: str, threshold: float) -> nab.FileScore:
        return nab.score_file(self.points[candidate][profile][file], self.profiles[profile], threshold)

    def result(self, profile: str, files: list[nab.FileScore], threshold: float) -> nab.CorpusResult:
        """A corpus result from file scores, normalised with the corpus' null and perfect detectors."""
        null, perfect = nab.null_and_perfect([self.points[0][profile][f.name] for f in files], self.profiles[profile])
        raw = sum(f.score for f in files)
        return nab.CorpusResult(profile, threshold, raw, null, perfect, nab.normalised(raw, null, perfect), files)


def validate(
    kind: str = ENSEMBLE,
    base_params: dict | None = None,
    groups: dict[str, list[LabelledSeries]] | None = None,
    profiles: dict[str, nab.CostProfile] | None = None,
    search: bool = True,
) -> ValidationReport:
    """In-sample, leave-one-file-out and leave-one-group-out validation with the recorded search.

    Leave-one-file-out (the gate's protocol): for each file, the candidate parameters and each
    profile's threshold are chosen on all *other* files (every group, the mean of the groups'
    normalised scores: each group counts once, however many rows it has), then the file is scored
    with them; a group's out-of-sample score sums its files' raw scores, normalised with NAB's
    null and perfect detectors of that group. Nothing of the held-out file touches its
    parameters or threshold. Leave-one-group-out is the stricter, reported beside it.

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
    all_files = [s for corpus in groups.values() for s in corpus]
    names = {g: [s.name for s in corpus] for g, corpus in groups.items()}
    every = [s.name for s in all_files]
    limits = {s.name: nab.window_index_limits(s.points[TIMESTAMP].reset_index(drop=True), s.windows) for s in all_files}
    points = []
    for params in grid:
        scorer = KpiScorer.new(kind, **params)
        per_file: dict[str, np.ndarray] = {}
        for corpus in groups.values():
            per_file.update(score_corpus_with_probation(scorer, corpus))
        points.append({p: {f: nab.sweep_weights(f, per_file[f], limits[f], prof) for f in every} for p, prof in profiles.items()})
    scored = _Scored(points, profiles, {f: g for g, fs in names.items() for f in fs})
    records = [{"candidate": c, **params, "group": g, "standard_in": scored.result("standard", [scored.file_score(c, "standard", f, scored.sweep(c, "standard", names[g])[0]) for f in names[g]], 0.0).score}
               for c, params in enumerate(grid) for g in groups]  # fmt: skip

    def chosen_on(train: list[str], test: list[str]) -> tuple[int, dict[str, float], dict[str, list[nab.FileScore]]]:
        c = scored.best_candidate(train)
        thresholds = {p: scored.sweep(c, p, train)[0] for p in profiles}
        return c, thresholds, {p: [scored.file_score(c, p, f, thresholds[p]) for f in test] for p in profiles}

    in_sample, logo, selections = {}, {}, {"leave_one_file_out": {}, "leave_one_group_out": {}}
    lofo_files: dict[str, dict[str, nab.FileScore]] = {p: {} for p in profiles}
    for f in every:
        c, thresholds, files = chosen_on([o for o in every if o != f], [f])
        selections["leave_one_file_out"][f] = {"params": grid[c], "thresholds": thresholds}
        for p in profiles:
            lofo_files[p][f] = files[p][0]
    for g in groups:
        _, th_in, files_in = chosen_on(names[g], names[g])
        in_sample[g] = {p: scored.result(p, files_in[p], th_in[p]) for p in profiles}
        c, th_logo, files_logo = chosen_on([f for f in every if f not in names[g]], names[g])
        logo[g] = {p: scored.result(p, files_logo[p], th_logo[p]) for p in profiles}
        selections["leave_one_group_out"][g] = {"params": grid[c], "thresholds": th_logo}
    out_of_sample = {g: {p: scored.result(p, [lofo_files[p][f] for f in names[g]], float("nan")) for p in profiles} for g in groups}
    chosen_all, deploy_thresholds, files_all = chosen_on(every, every)
    metrics = {}
    for p in profiles:
        for g in groups:
            metrics[f"nab_{p}_in_{g}"] = in_sample[g][p].score
            metrics[f"nab_{p}_oos_{g}"] = out_of_sample[g][p].score
            metrics[f"nab_{p}_logo_{g}"] = logo[g][p].score
        metrics[f"nab_{p}_in_all"] = scored.result(p, files_all[p], deploy_thresholds[p]).score
        metrics[f"nab_{p}_oos_all"] = scored.result(p, [lofo_files[p][f] for f in every], float("nan")).score
        metrics[f"nab_{p}_logo_all"] = scored.result(p, [fs for g in groups for fs in logo[g][p].files], float("nan")).score
    return ValidationReport(
        kind, metrics, in_sample, out_of_sample, logo, selections, pd.DataFrame(records), grid[chosen_all], deploy_thresholds
    )


def report_table(report: ValidationReport) -> pd.DataFrame:
    """In-sample and out-of-sample side by side: one row per profile x group x file (and the
    group totals), with alarm-episode precision and window recall."""
    rows = []
    lofo = report.selections["leave_one_file_out"]
    for g in report.in_sample:
        for p in report.in_sample[g]:
            ins, oos, logo = report.in_sample[g][p], report.out_of_sample[g][p], report.leave_one_group_out[g][p]
            rows.append({"group": g, "profile": p, "file": "TOTAL", "in_sample": ins.score, "out_of_sample": oos.score,
                         "leave_one_group_out": logo.score, "threshold_in": ins.threshold, "threshold_oos": float("nan"),
                         **_episodes(ins.files, "in"), **_episodes(oos.files, "oos")})  # fmt: skip
            for fi, fo, fg in zip(ins.files, oos.files, logo.files, strict=True):
                rows.append({"group": g, "profile": p, "file": fi.name, "in_sample": fi.score, "out_of_sample": fo.score,
                             "leave_one_group_out": fg.score, "threshold_in": ins.threshold,
                             "threshold_oos": lofo[fi.name]["thresholds"][p], **_episodes([fi], "in"), **_episodes([fo], "oos")})  # fmt: skip
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
