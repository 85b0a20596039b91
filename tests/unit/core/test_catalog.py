"""The catalogue against ``dvc.yaml`` and the code: every declared out is catalogued with its
producing stage (and back), each stage's ``deps`` cover every project module its command
imports, and every artefact name the code asks for exists."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.catalog import CATALOG, PROJECT_ROOT, Artefact, DataPaths, artefact, check_name

PACKAGE = "components"


# --------------------------------------------------------------------------- dvc.yaml


def _substitute(value: Any, item: str) -> Any:
    if isinstance(value, str):
        return value.replace("${item}", item)
    if isinstance(value, list):
        return [_substitute(v, item) for v in value]
    if isinstance(value, dict):
        return {_substitute(k, item): _substitute(v, item) for k, v in value.items()}
    return value


def expand_stages(dvc: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``dvc.yaml`` stages by their DVC name (``evaluate_real@kuairand``), each with its base
    name and its body, ``foreach`` expanded the way DVC does for a list."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, body in dvc["stages"].items():
        if "foreach" in body:
            for item in body["foreach"]:
                out[f"{name}@{item}"] = (name, _substitute(body["do"], str(item)))
        else:
            out[name] = (name, body)
    return out


def declared(body: Mapping[str, Any]) -> list[str]:
    """A stage's ``outs``, ``metrics`` and ``plots`` paths."""
    paths: list[str] = []
    for key in ("outs", "metrics", "plots"):
        for entry in body.get(key, []):
            paths.extend([entry] if isinstance(entry, str) else list(entry))
    return paths


@cache
def project_stages() -> dict[str, tuple[str, dict[str, Any]]]:
    return expand_stages(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- imports


def module_file(root: Path, module: str) -> Path | None:
    """The file of a project module or package, or ``None`` when ``module`` is neither."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(root: Path, module: str) -> set[str]:
    """Project modules ``module`` imports anywhere in its file (function bodies too), with the
    packages Python runs on the way."""
    path = module_file(root, module)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            if name.split(".")[0] == PACKAGE:
                found.update(m for m in _with_parents(name) if module_file(root, m) is not None)
    return found


def module_closure(root: Path, start: str) -> set[str]:
    """``start`` and every project module it imports, transitively."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(root, module) - seen)
    return seen


def has_code(path: Path) -> bool:
    """False for a file holding at most a docstring (an empty package ``__init__``)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in body)


def stage_module(cmd: str) -> str:
    found = re.search(rf"python\s+-m\s+({PACKAGE}(?:\.\w+)+)", cmd)
    assert found, f"cmd does not run a project module: {cmd!r}"
    return found.group(1)


def uncovered(root: Path, cmd: str, deps: list[str]) -> list[str]:
    """Project files the command runs that no dep (a file, or a folder above it) covers."""
    files = {module_file(root, m) for m in module_closure(root, stage_module(cmd))}
    missing = []
    for f in sorted(p for p in files if p is not None and has_code(p)):
        rel = f.relative_to(root).as_posix()
        if not any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps):
            missing.append(rel)
    return missing


# --------------------------------------------------------------------------- the catalogue


def test_every_artefact_is_catalogued_once_with_a_known_format() -> None:
    paths = [a.path for a in CATALOG.values()]
    assert len(paths) == len(set(paths)), "two entries share a path"
    for name, a in CATALOG.items():
        assert a.name == name
        assert not Path(a.path).is_absolute() and ".." not in Path(a.path).parts, a
        assert a.format, a


def test_paths_resolve_under_the_given_root(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    assert paths.of("interim_events") == tmp_path / "data" / "interim" / "events.parquet"
    assert paths.of("metrics_evaluate_dataset", dataset="kuairand") == tmp_path / "metrics" / "evaluate_kuairand.json"
    assert paths.interim == tmp_path / "data" / "interim"
    assert DataPaths().of("params") == PROJECT_ROOT / "params.yaml"


def test_placeholders_must_be_filled_exactly(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="dataset"):
        DataPaths(tmp_path).of("metrics_evaluate_dataset")
    with pytest.raises(KeyError, match="takes"):
        DataPaths(tmp_path).of("interim_events", dataset="x")
    with pytest.raises(KeyError, match="not in the catalogue"):
        DataPaths(tmp_path).of("interim_event")


def test_match_reads_placeholders_back() -> None:
    a = Artefact("x", "metrics/evaluate_${dataset}.json", "json", None, "")
    assert a.match("metrics/evaluate_movielens.json") == {"dataset": "movielens"}
    assert a.match("metrics/evaluate.json") is None
    assert a.match("metrics/plots/evaluate_x.json") is None
    dotted = Artefact("y", "data/drops/${data.source}", "drop", None, "")
    assert dotted.match("data/drops/synthetic") == {"data.source": "synthetic"}


# --------------------------------------------------------------------------- dvc.yaml vs catalogue


def _catalogued_by(path: str, stage: str) -> bool:
    return any(a.stage == stage and a.match(path) is not None for a in CATALOG.values())


def test_every_stage_output_is_catalogued_with_its_stage() -> None:
    missing = [
        f"{dvc_name}: {path}"
        for dvc_name, (stage, body) in project_stages().items()
        for path in declared(body)
        if not _catalogued_by(path, stage)
    ]
    assert not missing, "not catalogued with their producing stage:\n" + "\n".join(missing)


def _declared_by(a: Artefact, stage: str) -> bool:
    outs = [p for s, body in project_stages().values() if s == stage for p in declared(body)]
    return any(a.match(p) is not None or (not a.placeholders and a.path.startswith(p.rstrip("/") + "/")) for p in outs)


def test_every_catalogued_stage_artefact_is_declared_by_that_stage() -> None:
    wrong = [f"{a.name} ({a.path}): {a.stage}" for a in CATALOG.values() if a.stage and not _declared_by(a, a.stage)]
    assert not wrong, "catalogued with a stage that does not declare them:\n" + "\n".join(wrong)


def test_top_level_plots_read_catalogued_outputs() -> None:
    dvc = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    files = [f for plot in dvc.get("plots", []) for spec in plot.values() for f in (spec.get("y") or {})]
    assert files
    stray = [f for f in files if not any(a.stage and (a.match(f) or f.startswith(a.path + "/")) for a in CATALOG.values())]
    assert not stray


# --------------------------------------------------------------------------- deps vs imports


def test_deps_cover_every_project_module_a_stage_runs() -> None:
    problems = {
        name: gaps
        for name, (_, body) in project_stages().items()
        if (gaps := uncovered(PROJECT_ROOT, body["cmd"], list(body.get("deps", []))))
    }
    assert not problems, "deps miss modules their command imports:\n" + yaml.safe_dump(problems)


def test_a_stage_that_loads_the_feature_repo_depends_on_all_of_it() -> None:
    """Feast imports every module of ``feature_repo/`` together (``store.load_definitions``)."""
    modules = {f"feature_repo/{p.name}" for p in (PROJECT_ROOT / "feature_repo").glob("*.py")}
    partial = {
        name: sorted(modules - deps)
        for name, (_, body) in project_stages().items()
        if (deps := set(body.get("deps", []))) & modules and not modules <= deps
    }
    assert not partial


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_import_walk_follows_local_relative_and_package_imports(tmp_path: Path) -> None:
    _write(tmp_path, "components/__init__.py", "")
    _write(tmp_path, "components/a/__init__.py", '"""docstring only."""\n')
    _write(tmp_path, "components/a/stage.py", "from components.a import helper\n\ndef run():\n    from .deep import x\n")
    _write(tmp_path, "components/a/helper.py", "import components.b.util\n")
    _write(tmp_path, "components/a/deep.py", "x = 1\n")
    _write(tmp_path, "components/b/__init__.py", "FLAG = True\n")
    _write(tmp_path, "components/b/util.py", "import json\n")
    _write(tmp_path, "components/c.py", "")
    cmd = "python -m components.a.stage --params params.yaml"
    assert module_closure(tmp_path, "components.a.stage") == {
        "components", "components.a", "components.a.stage", "components.a.helper",
        "components.a.deep", "components.b", "components.b.util",
    }  # fmt: skip
    # components/b/__init__.py has code, so it counts; the docstring-only package does not
    assert uncovered(tmp_path, cmd, ["components/a/stage.py"]) == [
        "components/a/deep.py", "components/a/helper.py", "components/b/__init__.py", "components/b/util.py",
    ]  # fmt: skip
    assert uncovered(tmp_path, cmd, ["components/a", "components/b"]) == []


# --------------------------------------------------------------------------- code vs catalogue


def _artefact_requests() -> Iterator[tuple[str, int, str, set[str]]]:
    """Every ``<paths>.of("name", key=...)`` call in the project's code, with its keywords."""
    for folder in ("components", "dags", "feature_repo", "benchmarks", "tests"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # this file asks for wrong names on purpose
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"of"}
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    keys = {k.arg for k in node.keywords if k.arg is not None}
                    yield str(path.relative_to(PROJECT_ROOT)), node.lineno, node.args[0].value, keys


def test_code_asks_only_for_catalogued_artefacts_with_their_placeholders() -> None:
    requests = list(_artefact_requests())
    assert len(requests) > 50  # the walk sees the stages' requests
    bad = [
        f"{file}:{line}: {name} {sorted(keys)}"
        for file, line, name, keys in requests
        if name not in CATALOG or artefact(name).placeholders != keys
    ]
    assert not bad


@pytest.mark.parametrize("name", ["x/../../../data/victim", "..", "a/b", "/etc", ".hidden", "", "a" * 129, "ok\n"])
def test_a_placeholder_value_must_be_one_safe_path_segment(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="is not a safe name"):
        check_name(name)
    with pytest.raises(ValueError, match="dataset="):
        DataPaths(tmp_path).of("metrics_evaluate_dataset", dataset=name)


def test_ordinary_names_stay_valid(tmp_path: Path) -> None:
    for name in ("synthetic", "kuairand", "ml-1m", "amazon_books.2018", "split@v2"):
        assert DataPaths(tmp_path).of("metrics_evaluate_dataset", dataset=name).name == f"evaluate_{name}.json"
