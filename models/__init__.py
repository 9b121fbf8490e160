"""Anomaly models (seasonal dynamic baselines, ETS challenger), refund risk, MLflow registry.

Public API (import the submodules; ``models.registry`` pulls in MLflow):

* ``models.scorer.KpiScorer`` — stateful causal scorer of many KPI series
  (``fit(history)``, ``score(frame)``, ``copy()``, ``save``/``load``).
* ``models.seasonal_baseline.score_batch(state, params, rows, seconds, values)`` —
  one vectorised O(1)-per-point step over many series.
* ``models.registry`` — ``train_and_register``, ``load_scorer``, ``load_pyfunc``,
  ``promote_if_better``, ``evaluate_scorer``.
* ``models.refund_risk`` — ``build_order_features``, ``train_refund_model``,
  ``register_refund_model``, ``load_refund_model``.
* ``models.nab`` — the NAB scorer; ``models.cli.app`` — ``trivas model …``.
"""
