"""The Databricks Asset Bundle as the Databricks CLI sees it, for tests (the CLI cannot be
installed here): ``include`` files merged in, one target's overrides applied, ``${…}``
references substituted, development mode's renaming and paused schedules, and a task's
``python_wheel_task`` parameters parsed by the real ``trivas`` command tree.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lakehouse.config import deep_merge

REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\[\]-]+)\}")
DEPLOY_TIME = ("resources.",)  # ids known only once deployed: the CLI leaves them to deployment
USER = "someone"  # ${workspace.current_user.short_name}: the deploying user's name
TARGET_SECTIONS = ("bundle", "workspace", "artifacts", "resources", "presets", "run_as", "permissions", "sync")


class BundleError(ValueError):
    """What the CLI would refuse: a missing variable, an unknown reference, a duplicate resource."""


# The CLI merges target overrides as the settings layers merge: maps key by key, other values
# are replaced.
merge = deep_merge


def load_bundle(root: Path) -> dict[str, Any]:
    """``databricks.yml`` with every ``include``d file merged in; a resource defined twice is an error."""
    bundle = yaml.safe_load((root / "databricks.yml").read_text())
    for pattern in bundle.get("include", []):
        for path in sorted(root.glob(pattern)):
            part = yaml.safe_load(path.read_text()) or {}
            for kind, resources in (part.get("resources") or {}).items():
                known = bundle.setdefault("resources", {}).setdefault(kind, {})
                for name, resource in resources.items():
                    if name in known:
                        raise BundleError(f"resources.{kind}.{name} is defined twice ({path.name})")
                    known[name] = {**resource, "__file__": str(path)}
            for key, value in part.items():
                if key != "resources":
                    bundle[key] = merge(bundle.get(key, {}), value)
    return bundle


def without_origins(node: Any) -> Any:
    """The document without the ``__file__`` markers of :func:`load_bundle`."""
    if isinstance(node, Mapping):
        return {k: without_origins(v) for k, v in node.items() if k != "__file__"}
    if isinstance(node, list):
        return [without_origins(v) for v in node]
    return node


def variable_values(bundle: Mapping[str, Any], target: str) -> dict[str, Any]:
    """Each variable's value in ``target``: the target's value, else the default."""
    overrides = bundle["targets"][target].get("variables") or {}
    values = {}
    for name, spec in (bundle.get("variables") or {}).items():
        if name in overrides:
            given = overrides[name]
            values[name] = given["default"] if isinstance(given, Mapping) and "default" in given else given
        elif "default" in spec:
            values[name] = spec["default"]
        else:
            raise BundleError(f"variable {name} has no value in target {target} (give it with --var)")
    unknown = set(overrides) - set(values)
    if unknown:
        raise BundleError(f"target {target} sets undefined variables {sorted(unknown)}")
    return values


def lookup(context: Mapping[str, Any], dotted: str) -> Any:
    node: Any = context
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise BundleError(f"unknown reference ${{{dotted}}}")
        node = node[part]
    return node


def substitute(node: Any, context: Mapping[str, Any]) -> Any:
    """Replace ``${…}``: a whole-string reference keeps its value's type (complex variables)."""
    if isinstance(node, Mapping):
        return {k: substitute(v, context) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, context) for v in node]
    if not isinstance(node, str):
        return node
    whole = REFERENCE.fullmatch(node)
    if whole and not whole.group(1).startswith(DEPLOY_TIME):
        return substitute(lookup(context, whole.group(1)), context)

    def one(match: re.Match[str]) -> str:
        if match.group(1).startswith(DEPLOY_TIME):
            return match.group(0)
        return str(substitute(lookup(context, match.group(1)), context))

    return REFERENCE.sub(one, node)


def resolve_target(bundle: Mapping[str, Any], target: str) -> dict[str, Any]:
    """The configuration the CLI deploys for ``target`` (``databricks bundle validate -t T``)."""
    if target not in bundle.get("targets", {}):
        raise BundleError(f"no target {target}")
    spec = bundle["targets"][target]
    document = {k: copy.deepcopy(v) for k, v in bundle.items() if k not in ("targets", "variables")}
    for section in TARGET_SECTIONS:
        if section in spec:
            document[section] = merge(document.get(section, {}), spec[section])
    workspace = document.setdefault("workspace", {})
    workspace.setdefault("root_path", f"/Workspace/Users/{USER}/.bundle/{bundle['bundle']['name']}/{target}")
    context = {
        "var": variable_values(bundle, target),
        "bundle": {**document["bundle"], "target": target},
        "workspace": {**workspace, "current_user": {"short_name": USER, "userName": f"{USER}@example.com"}},
    }
    workspace.setdefault("file_path", f"{workspace['root_path']}/files")
    context["workspace"]["file_path"] = workspace["file_path"]
    resolved = substitute(document, context)
    if spec.get("mode") == "development":
        for job in resolved.get("resources", {}).get("jobs", {}).values():
            job["name"] = f"[dev {USER}] {job['name']}"
            job.setdefault("tags", {})["dev"] = USER
            if "schedule" in job:
                job["schedule"]["pause_status"] = "PAUSED"
    return resolved


def resolved_path(resource: Mapping[str, Any], relative: str) -> Path:
    """A path written in an included file, relative to that file (as the CLI resolves it)."""
    return (Path(resource["__file__"]).parent / relative).resolve()
