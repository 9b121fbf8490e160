"""Alerts: the lifecycle of an alert and its routing to the people on call.

- :mod:`~lakehouse.alerts.lifecycle`: what an alert is (``gold.alerts``), fire/extend/resolve;
- :mod:`~lakehouse.alerts.sink`: the Spark MERGE that writes ``gold.alerts``;
- :mod:`~lakehouse.alerts.config`: ``conf/alerts.yaml`` (receivers, routes, inhibition, on-call);
- :mod:`~lakehouse.alerts.routing`: labels, matchers, the routing tree, silences, inhibition;
- :mod:`~lakehouse.alerts.dispatch`: grouping, repeats, escalation (pure, clock-driven);
- :mod:`~lakehouse.alerts.oncall`: rotations, layers, overrides, who is on call;
- :mod:`~lakehouse.alerts.content`: what a notification says (e-mail, Slack, PagerDuty, webhook);
- :mod:`~lakehouse.alerts.receivers`: the senders, and webhook signatures;
- :mod:`~lakehouse.alerts.delivery`: one worker per receiver, retries with backoff;
- :mod:`~lakehouse.alerts.store`: ``ops.notifications`` and ``ops.alert_commands``;
- :mod:`~lakehouse.alerts.router`: the router that ties them together;
- :mod:`~lakehouse.alerts.callbacks`: acknowledgements from Slack and PagerDuty;
- :mod:`~lakehouse.alerts.cli`: ``trivas alerts …`` and ``trivas oncall who``;
- :mod:`~lakehouse.alerts.local_receivers`: a local SMTP server and webhook inbox (playground).
"""
