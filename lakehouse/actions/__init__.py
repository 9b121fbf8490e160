"""Automated actions behind guardrails (``conf/actions.yaml``; see docs/actions.md).

- :mod:`~lakehouse.actions.config`: the policies, limits, platform, kill switch, dry run;
- :mod:`~lakehouse.actions.triggers`: each trigger's signals over the evidence (pure);
- :mod:`~lakehouse.actions.guardrails`: threshold, selector, idempotency, cool-down, rate, blast radius (pure);
- :mod:`~lakehouse.actions.proposals`: signals, proposals and their idempotency key;
- :mod:`~lakehouse.actions.engine`: policies → proposals in ``ops.action_requests`` (the act job's step);
- :mod:`~lakehouse.actions.store`: ``ops.action_requests``, ``ops.action_commands``, ``ops.audit_log``;
- :mod:`~lakehouse.actions.roles`: viewer / approver / admin from the account file;
- :mod:`~lakehouse.actions.approvals`: approve, reject, roll back, the kill switch, and the overview;
- :mod:`~lakehouse.actions.executors`: each action type and its inverse over HTTP, escalation via PagerDuty;
- :mod:`~lakehouse.actions.worker`: the worker that decides, executes and rolls back outside Spark;
- :mod:`~lakehouse.actions.sandbox`: the sandbox commerce platform (a real HTTP service);
- :mod:`~lakehouse.actions.cli`: ``trivas actions …``.
"""
