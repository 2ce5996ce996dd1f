"""Hold terraform/ to the code: `python -m infra.terraform_check [--root DIR]` prints each mismatch, exit 1.

The code says what a deployment needs: the function table and each function's environment
(infra/functions.py), the variables settings.py reads and which of them are secrets (its repr=False
fields), the task queues (its TaskQueueConfig fields) and tick topics, the metric names
(runtime/metrics.py). terraform/ must provision exactly that, and every identity must hold exactly
the roles of the table in docs/deployment.md. Run it from the tree it checks (its code is imported).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROLES_HEADING = "## Service accounts and roles"
SECRET_ROLE = "roles/secretmanager.secretAccessor"


class _Recorder(dict[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return default


@dataclasses.dataclass(frozen=True)
class Code:
    """What the code says a deployment needs."""

    functions: dict[str, str]  # name -> signature (infra/functions.py's table)
    tick_topics: dict[str, str]  # function -> the topic its sample message comes from
    environment: dict[str, frozenset[str]]
    not_deployed: frozenset[str]
    read: frozenset[str]  # every variable Settings.from_env asks for
    secrets: frozenset[str]
    queues: dict[str, tuple[float, int, int, float, float]]  # queue id -> its limits
    topics: frozenset[str]
    metrics: dict[str, tuple[str, ...]]
    runtime: str


def read_code(root: Path) -> Code:
    """The code's side, imported from the tree on sys.path (run from `root`)."""
    from firebackup.runtime.metrics import SPECS
    from firebackup.settings import Settings, TaskQueueConfig
    from infra import functions

    recorder = _Recorder()
    Settings.from_env(recorder)
    fields = dataclasses.fields(Settings)
    defaults = Settings()
    queues = {}
    for f in fields:
        value = getattr(defaults, f.name)
        if isinstance(value, TaskQueueConfig):
            queues[value.name] = (value.max_dispatches_per_second, value.max_concurrent_dispatches,
                                  value.max_attempts, value.min_backoff, value.max_backoff)
    table = {f.name: f.signature for f in functions.FUNCTIONS}
    ticks = {f.name: f.sample.topic for f in functions.FUNCTIONS if isinstance(f.sample, functions.PubSubMessage)}
    topics = {getattr(defaults, f.name) for f in fields if f.name.endswith("_topic")} | set(ticks.values())
    requires = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    low = re.search(r">=\s*3\.(\d+)", requires)
    return Code(
        functions=dict(table),
        tick_topics=ticks,
        environment={name: frozenset(env) for name, env in functions.ENVIRONMENT.items()},
        not_deployed=frozenset(functions.NOT_DEPLOYED),
        read=frozenset(recorder.seen),
        secrets=frozenset(f"FIREBACKUP_{f.name.upper()}" for f in fields if not f.repr),
        queues=queues,
        topics=frozenset(topics),
        metrics={s.name: s.labels for s in SPECS},
        runtime=f"python3{low.group(1) if low else '?'}",
    )


# --- the Terraform side -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """python-hcl2's tree with string literals unquoted and its block markers dropped."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_tree(folder: Path) -> dict[str, dict[str, Any]]:
    """Every .tf file under folder (examples excluded), parsed: relative path -> document."""
    import hcl2

    docs = {}
    for path in sorted(folder.rglob("*.tf")):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("examples/") or "/.terraform/" in f"/{rel}":
            continue
        with path.open(encoding="utf-8") as fh:
            docs[rel] = _plain(hcl2.load(fh))
    return docs


def _blocks(doc: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of each `resource`/`module`/... block; modules and variables have type ""."""
    for block in doc.get(kind, []):
        for first, inner in block.items():
            if kind in ("resource", "data"):
                for name, body in inner.items():
                    yield first, name, body
            else:
                yield "", first, inner


def _locals(docs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The root module's locals (files directly under terraform/), a value that is just `local.x` replaced by x."""
    merged: dict[str, Any] = {}
    for rel, doc in docs.items():
        if "/" not in rel:
            for block in doc.get("locals", []):
                merged.update(block)

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        whole = re.fullmatch(r"\$\{local\.(\w+)\}", value) if isinstance(value, str) else None
        return merged[whole.group(1)] if whole and whole.group(1) in merged else value

    return {name: resolve(value) for name, value in merged.items()}


def _resources(docs: Mapping[str, Mapping[str, Any]], rtype: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(rel, name, body) for rel, doc in docs.items() for t, name, body in _blocks(doc, "resource") if t == rtype]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def roles_table(markdown: str) -> set[tuple[str, str, str]]:
    """(account, role, scope) rows of the table under ROLES_HEADING in the deployment guide."""
    rows: set[tuple[str, str, str]] = set()
    section = markdown.partition(ROLES_HEADING)[2].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("roles/"):
            rows.add((cells[0], cells[1], cells[2]))
    return rows


def problems(root: Path) -> list[str]:
    """Each way terraform/ (and the deployment guide's roles table) differs from the code, one line each."""
    code = read_code(root)
    docs = load_tree(root / "terraform")
    top = _locals(docs)
    out: list[str] = []

    # Functions: one entry each, the right signature, entry point and runtime.
    tf_functions: dict[str, Any] = top.get("functions", {})
    for name in sorted(set(code.functions) - set(tf_functions)):
        out.append(f"function {name} (infra/functions.py) has no entry in terraform/main.tf local.functions; add it")
    for name in sorted(set(tf_functions) - set(code.functions)):
        out.append(f"terraform/main.tf local.functions has {name}, which infra/functions.py does not list; remove it")
    for name in sorted(set(code.functions) - set(code.environment)):
        out.append(f"function {name} has no entry in infra/functions.py ENVIRONMENT; declare the variables it reads")
    from infra.functions import present

    for folder in present(root / "functions"):
        if folder not in code.functions:
            out.append(f"functions/{folder}/main.py is not in infra/functions.py; add it there and to terraform")
    for name in sorted(set(code.functions) & set(tf_functions)):
        tf = tf_functions[name]
        if tf.get("signature") != code.functions[name]:
            out.append(f"function {name}: terraform signature {tf.get('signature')!r}, the code's {code.functions[name]!r}")
        topic = code.tick_topics.get(name)
        if tf.get("placement") == "platform" and code.functions[name] == "cloudevent" and tf.get("topic") != topic:
            out.append(f"function {name}: terraform triggers it from topic {tf.get('topic')!r}, the code from {topic!r}")
    out += _check_function_resource(docs, code)

    # Environment: exactly the declared variables, secret ones from Secret Manager.
    control = set(top.get("control_plane_env", []))
    per_identity = set(top.get("per_identity_env", []))
    values = set(top.get("env_values", {}))
    for name in sorted(set(code.environment) & set(tf_functions)):
        tf = tf_functions[name]
        plain, secret = control | set(tf.get("env", [])), set(tf.get("secrets", []))
        wanted = code.environment[name]
        for var in sorted(wanted - plain - secret):
            out.append(f"function {name} reads {var} (infra/functions.py ENVIRONMENT) but terraform does not set it")
        for var in sorted((plain | secret) - wanted):
            out.append(f"terraform sets {var} on function {name}, which infra/functions.py ENVIRONMENT does not declare")
        for var in sorted(plain & code.secrets):
            out.append(f"function {name}: secret {var} is a plain variable in terraform; list it in its secrets")
        for var in sorted(secret - code.secrets):
            out.append(f"function {name}: {var} is in its terraform secrets but settings.py does not hold it as a secret")
        for var in sorted(plain - code.secrets - per_identity - values):
            out.append(f"function {name}: {var} has no value in terraform/main.tf local.env_values")
    declared = set().union(*code.environment.values()) if code.environment else set()
    for var in sorted(code.read - declared - code.not_deployed):
        out.append(f"settings.py reads {var} but infra/functions.py names it in neither ENVIRONMENT nor NOT_DEPLOYED")
    for var in sorted((declared | code.not_deployed) - code.read):
        out.append(f"infra/functions.py names {var}, which settings.py does not read; drop it")

    # Secrets: one Secret Manager secret each, readable only by the functions that name it.
    tf_secrets = set(top.get("secrets", {}))
    for var in sorted(code.secrets - tf_secrets):
        out.append(f"secret {var} (settings.py) has no Secret Manager secret in terraform/secrets.tf local.secrets")
    for var in sorted(tf_secrets - code.secrets):
        out.append(f"terraform/secrets.tf has secret {var}, which settings.py does not hold; remove it")
    out += _check_secret_grants(docs, top)

    # Queues and topics.
    for queue_id, limits in sorted(code.queues.items()):
        tf_queue = next((q for q in top.get("queues", {}).values() if q.get("name") == queue_id), None)
        if tf_queue is None:
            out.append(f"queue {queue_id} (settings.py) has no entry in terraform/tasks.tf local.queues")
            continue
        tf_limits = tuple(float(tf_queue.get(k, -1)) for k in ("rate", "concurrent", "attempts", "min_backoff",
                                                                 "max_backoff"))
        if tf_limits != tuple(float(v) for v in limits):
            out.append(f"queue {queue_id}: terraform limits {tf_limits} differ from settings.py's {limits}")
    for queue in top.get("queues", {}).values():
        if queue.get("name") not in code.queues:
            out.append(f"terraform/tasks.tf has queue {queue.get('name')}, which settings.py does not name")
    tf_topics = set(top.get("ticks", {}))
    for topic in sorted(code.topics - tf_topics):
        out.append(f"topic {topic} (the code's) has no entry in terraform/ticks.tf local.ticks")
    for topic in sorted(tf_topics - code.topics):
        out.append(f"terraform/ticks.tf has topic {topic}, which the code does not name")

    # Metrics.
    tf_metrics = top.get("log_metrics", {})
    for metric, labels in sorted(code.metrics.items()):
        if metric not in tf_metrics:
            out.append(f"metric {metric} (runtime/metrics.py) has no log-based metric in terraform/monitoring.tf")
        elif tuple(tf_metrics[metric].get("labels", [])) != labels:
            out.append(f"metric {metric}: terraform labels {tf_metrics[metric].get('labels')} differ from {list(labels)}")
    for metric in sorted(set(tf_metrics) - set(code.metrics)):
        out.append(f"terraform/monitoring.tf has metric {metric}, which runtime/metrics.py does not define")

    # Roles: exactly the deployment guide's table.
    out += _check_roles(root, top, tf_functions)
    return out


def _check_function_resource(docs: Mapping[str, Mapping[str, Any]], code: Code) -> list[str]:
    out = []
    resources = _resources(docs, "google_cloudfunctions2_function")
    if [(rel, name) for rel, name, _ in resources] != [("modules/function/main.tf", "function")]:
        out.append(f"terraform must define functions only in modules/function (found {[r[:2] for r in resources]})")
        return out
    build = resources[0][2]["build_config"][0]
    if build.get("entry_point") != "${var.entry_point}" or build.get("runtime") != "${var.runtime}":
        out.append("modules/function must take entry_point and runtime from its variables")
    calls = {(rel, name): body for rel, doc in docs.items() for _, name, body in _blocks(doc, "module")}
    root_call = calls.get(("functions.tf", "function"), {})
    if root_call.get("entry_point") != "${each.key}" or root_call.get("for_each") != "${local.platform_functions}":
        out.append("terraform/functions.tf module.function must deploy local.platform_functions with entry_point = each.key")
    if root_call.get("runtime") != "${var.python_runtime}":
        out.append("terraform/functions.tf module.function must use var.python_runtime")
    customer = calls.get(("modules/customer_pitr/main.tf", "capture"), {})
    if customer.get("entry_point") != "${var.capture.entry_point}":
        out.append("modules/customer_pitr must deploy the capture with the entry point FireBackup hands over")
    outputs = {name: body for doc in docs.values() for block in doc.get("output", []) for name, body in block.items()}
    handed = outputs.get("pitr_capture", {}).get("value", {})
    if handed.get("entry_point") not in code.functions or handed.get("entry_point") != "pitr_capture":
        out.append("terraform output pitr_capture must hand over entry_point = \"pitr_capture\"")
    variables = {name: body for _, name, body in _blocks(docs.get("variables.tf", {}), "variable")}
    if variables.get("python_runtime", {}).get("default") != code.runtime:
        out.append(f"terraform var.python_runtime defaults to {variables.get('python_runtime', {}).get('default')!r}; "
                   f"pyproject.toml's requires-python wants {code.runtime}")
    return out


def _check_secret_grants(docs: Mapping[str, Mapping[str, Any]], top: Mapping[str, Any]) -> list[str]:
    out = []
    granting = [(rel, name) for rel, doc in docs.items() for _, name, body in _blocks(doc, "resource")
                if any("roles/secretmanager" in s for s in _strings(body))]
    if granting != [("iam.tf", "access")]:
        out.append(f"only iam.tf google_secret_manager_secret_iam_member.access may grant secrets (found {granting})")
    access = dict((n, b) for _, n, b in _resources(docs, "google_secret_manager_secret_iam_member")).get("access", {})
    if access.get("for_each") != "${local.secret_grants}" or "f.secrets" not in str(top.get("secret_grants", "")):
        out.append("iam.tf must grant each secret from local.secret_grants, built from each function's secrets")
    return out


def _check_roles(root: Path, top: Mapping[str, Any], tf_functions: Mapping[str, Any]) -> list[str]:
    guide = root / "docs" / "deployment.md"
    if not guide.is_file():
        return [f"{guide} is missing; it holds the service-account roles table"]
    table = roles_table(guide.read_text(encoding="utf-8"))
    granted: set[tuple[str, str, str]] = set()
    for account, roles in top.get("roles", {}).items():
        for role in roles:
            name, _, scope = role.partition("@")
            granted.add((account, name, scope or "project"))
    for name, f in tf_functions.items():
        for var in f.get("secrets", []):
            granted.add((name, SECRET_ROLE, f"secret {var}"))
    out = [f"terraform grants {a} {r} on {s}, which docs/deployment.md's roles table does not list"
           for a, r, s in sorted(granted - table)]
    out += [f"docs/deployment.md lists {r} on {s} for {a}, which terraform does not grant"
            for a, r, s in sorted(table - granted)]
    for account in sorted({a for a, _, _ in granted} - set(top.get("identities", {}))):
        out.append(f"terraform grants roles to {account}, which has no service account in iam.tf local.identities")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.terraform_check", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the tree to check (default: this one)")
    args = parser.parse_args(argv)
    found = problems(args.root.resolve())
    for line in found:
        print(f"terraform_check: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
