"""Anomaly models (cold-start ensemble champion; seasonal baseline, ETS and Half-Space Trees
challengers), refund risk, MLflow registry.

Public API (import the submodules; ``models.registry`` pulls in MLflow):

* ``models.scorer.KpiScorer`` — stateful causal scorer of many KPI series
  (``fit(history)``, ``score(frame)``, ``preview(frame)`` without learning, ``copy()``,
  ``save``/``load``, per-series alert-budget ``page_thresholds``).
* ``models.ensemble`` — the cold-start ensemble (local level, daily profile, seasonal
  baseline weighted by support and error; CUSUMs, flat lines; NAB's anomaly likelihood
  and alarm suppression).
* ``models.validation`` — leave-one-file-out (the gate) and leave-one-group-out NAB
  validation, the recorded search, the
  promotion gate as data (``PromotionGate``).
* ``models.kpi_scoring`` / ``models.open_window`` — the detect job's scoring step: final
  windows learnt, open windows scored early, calendar promotions not paged.
* ``models.alert_budget`` — paging thresholds from an alert budget on each KPI's history.
* ``models.ratio_test`` / ``models.count_test`` — sequential tests on a window's counts: the
  binomial CUSUM of ratio KPIs, the Poisson drop/rise CUSUMs of count KPIs (open windows by
  their exposure).
* ``models.seasonal_baseline.score_batch(state, params, rows, seconds, values)`` —
  one vectorised O(1)-per-point step over many series.
* ``models.registry`` — ``train_and_register``, ``load_scorer``, ``load_pyfunc``,
  ``promote_if_better``, ``evaluate_scorer``.
* ``models.refund_risk`` — ``build_order_features``, ``train_refund_model``,
  ``register_refund_model``, ``load_refund_model``.
* ``models.nab`` — the NAB scorer; ``models.cli.app`` — ``trivas model …``.
"""
