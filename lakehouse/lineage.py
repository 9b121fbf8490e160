"""The lineage graph: sources → Kafka topics → bronze/silver → gold tables → KPIs → alerts.

Derived from the declarations, never drawn by hand: the event catalog (a raw topic and a
silver view per domain), the table registry (each table's writer), the KPI contracts (each
KPI's silver domain or input KPIs), the CDC mirrors and the webhook providers. The app's
lineage page draws this graph, and every chart's lineage overlay is the upstream path of its
table or KPI in the same graph (:func:`upstream`), with the versions and batches the app reads
beside each node.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lakehouse.catalog import catalog as load_catalog
from lakehouse.catalog import topic_for
from lakehouse.contracts import contracts as load_contracts

SOURCE, TOPIC, TABLE, VIEW, KPI_NODE = "source", "topic", "table", "view", "kpi"

# The silver domain a webhook provider's events land in (its adapter maps them to event types
# of this domain: lakehouse/ingest/webhooks/<provider>.py).
WEBHOOK_DOMAINS = {"stripe": "payments", "shopify": "orders"}
SDK_DOMAINS = ("web", "orders", "ads", "support", "inventory")  # what the SDK/collector sends

# Writers (streaming queries and jobs) of tables declared outside lakehouse.registry.
OTHER_WRITERS = {
    "gold.alerts": "detect_kpi",
    "gold.refund_risk": "gold_refund_risk",
}


@dataclass(frozen=True)
class Node:
    """One box of the lineage graph."""

    name: str
    kind: str  # source | topic | table | view | kpi
    writer: str | None = None  # the query or job that writes a table
    inputs: tuple[str, ...] = ()


def _add(nodes: dict[str, Node], node: Node) -> None:
    nodes[node.name] = node


@cache
def graph(topic_prefix: str = "raw") -> dict[str, Node]:
    """Every node of the lakehouse's lineage by name (inputs point upstream)."""
    from lakehouse.ingest.cdc.mirrors import MIRRORED_TABLES
    from lakehouse.registry import (
        BRONZE_EVENTS,
        KPI,
        KPI_CURRENT,
        KPI_ROLLUP,
        ORDER_PAYMENTS,
        SESSIONS,
        SILVER_EVENTS,
        TableSpec,
        ViewSpec,
        registry,
    )

    catalog, contracts = load_catalog(), load_contracts()
    nodes: dict[str, Node] = {}
    topics = {d: topic_for(topic_prefix, d) for d in catalog.domains}
    for domain, topic in topics.items():
        feeders = ["source:generator"]
        if domain in SDK_DOMAINS:
            feeders.append("source:sdk")
        feeders += [f"source:webhook:{p}" for p, d in WEBHOOK_DOMAINS.items() if d == domain]
        _add(nodes, Node(f"topic:{topic}", TOPIC, "collector", tuple(feeders)))
    for name in ["generator", "sdk", *(f"webhook:{p}" for p in WEBHOOK_DOMAINS)]:
        _add(nodes, Node(f"source:{name}", SOURCE))
    topic_nodes = tuple(f"topic:{t}" for t in topics.values())
    for mirror in MIRRORED_TABLES.values():
        topic = f"topic:cdc.{mirror.source}"
        _add(nodes, Node(f"source:cdc:{mirror.source}", SOURCE))
        _add(nodes, Node(topic, TOPIC, "debezium", (f"source:cdc:{mirror.source}",)))
        _add(nodes, Node(mirror.silver, TABLE, "silver_cdc", (topic,)))
    specs = registry()
    for name, spec in specs.items():
        if isinstance(spec, ViewSpec):
            _add(nodes, Node(name, VIEW, None, (spec.base,)))
        elif isinstance(spec, TableSpec):
            _add(nodes, Node(name, TABLE, spec.writer))
    upstream_of = {
        BRONZE_EVENTS: topic_nodes,
        SILVER_EVENTS: topic_nodes,
        "silver.quarantine": topic_nodes,
        "silver.late": topic_nodes,
        SESSIONS: (f"silver.{catalog.domains['web'].table}",),
        ORDER_PAYMENTS: (f"silver.{catalog.domains['orders'].table}", f"silver.{catalog.domains['payments'].table}"),
        KPI: tuple(sorted({f"silver.{catalog.domains[c.source].table}" for c in contracts.kpis.values() if c.source})),
        KPI_ROLLUP: (KPI_CURRENT,),
        "gold.alerts": (KPI,),
        "ops.notifications": ("gold.alerts",),
    }
    for name, inputs in upstream_of.items():
        node = nodes.get(name) or Node(name, TABLE, OTHER_WRITERS.get(name))
        _add(nodes, Node(name, node.kind, node.writer or OTHER_WRITERS.get(name), inputs))
    for contract in contracts.kpis.values():
        if contract.source:
            inputs = (f"silver.{catalog.domains[contract.source].table}",)
        else:
            inputs = tuple(f"kpi:{n}" for n in (contract.inputs or ((contract.of,) if contract.of else ())))
        _add(nodes, Node(f"kpi:{contract.name}", KPI_NODE, "silver_gold", inputs))
    return nodes


def upstream(name: str, nodes: dict[str, Node] | None = None) -> list[Node]:
    """``name`` and everything it is computed from, nearest first (each node once)."""
    nodes = nodes if nodes is not None else graph()
    seen: list[Node] = []
    frontier = [name]
    while frontier:
        current = frontier.pop(0)
        node = nodes.get(current)
        if node is None or node in seen:
            continue
        seen.append(node)
        frontier.extend(node.inputs)
    return seen


def kpi_tables(kpi: str, nodes: dict[str, Node] | None = None) -> list[str]:
    """The tables and views a KPI's number is read through: gold.kpi, then its silver sources."""
    return ["gold.kpi"] + [n.name for n in upstream(f"kpi:{kpi}", nodes) if n.kind in (TABLE, VIEW)]


def dot(nodes: dict[str, Node], labels: dict[str, str] | None = None) -> str:
    """The graph in Graphviz DOT (left to right), ``labels`` adding a line under a node's name."""
    shapes = {SOURCE: "cds", TOPIC: "parallelogram", TABLE: "box", VIEW: "box", KPI_NODE: "ellipse"}
    lines = ["digraph lineage {", "  rankdir=LR; node [fontsize=10, fontname=Helvetica];"]
    for node in nodes.values():
        extra = (labels or {}).get(node.name)
        label = node.name + (f"\\n{extra}" if extra else "")
        style = ', style="dashed"' if node.kind == VIEW else ""
        lines.append(f'  "{node.name}" [label="{label}", shape={shapes[node.kind]}{style}];')
    for node in nodes.values():
        for source in node.inputs:
            lines.append(f'  "{source}" -> "{node.name}";')
    lines.append("}")
    return "\n".join(lines)
