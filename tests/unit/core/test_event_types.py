"""The named event-type sets: defined once in ``core.schema``, consistent, and never redefined."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.core import schema as S

ROOT = Path(__file__).resolve().parents[3]
NAMED_SETS = {n: getattr(S, n) for n in dir(S) if n.endswith("_TYPES") and n != "EVENT_TYPES"}


@pytest.mark.parametrize("name", sorted(NAMED_SETS))
def test_each_set_holds_known_types_in_event_type_order(name: str) -> None:
    types = NAMED_SETS[name]
    assert types and len(set(types)) == len(types)
    assert list(types) == [t for t in S.EVENT_TYPES if t in types], name


def test_creator_types_are_those_that_name_a_creator_and_no_content() -> None:
    about_creator = [
        t
        for t in S.USER_EVENT_TYPES
        if "creator_id" in S.REQUIRED_FIELDS[t] and "content_id" not in S.REQUIRED_FIELDS[t]
    ]
    assert list(S.CREATOR_TYPES) == about_creator == ["follow", "unfollow"]


def test_content_sets_leave_out_creator_events() -> None:
    assert set(S.CONTENT_EVENT_TYPES) == set(S.USER_EVENT_TYPES) - set(S.CREATOR_TYPES)
    assert set(S.CONTENT_NEGATIVE_TYPES) == set(S.NEGATIVE_TYPES) - {"unfollow"}
    assert set(S.CONTENT_ENGAGEMENT_TYPES) == set(S.ENGAGEMENT_TYPES) - {"follow"}
    assert "unfollow" in S.NEGATIVE_TYPES


def test_positive_is_strong_plus_light_and_disjoint_from_negative() -> None:
    assert not set(S.STRONG_POSITIVE_TYPES) & set(S.LIGHT_POSITIVE_TYPES)
    assert set(S.POSITIVE_TYPES) == set(S.STRONG_POSITIVE_TYPES) | set(S.LIGHT_POSITIVE_TYPES)
    assert set(S.POSITIVE_TYPES) == set(S.ENGAGEMENT_TYPES) | {"complete_view", "replay"}
    assert not set(S.POSITIVE_TYPES) & set(S.NEGATIVE_TYPES)
    assert set(S.BLOCKING_TYPES) <= set(S.CONTENT_NEGATIVE_TYPES)


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not event types"):
        S._of("like", "lik")


def _event_type_literals(tree: ast.Module) -> list[tuple[int, str]]:
    """Module- and class-level names bound to a literal tuple / list / set of event-type strings."""
    known = set(S.EVENT_TYPES)
    found: list[tuple[int, str]] = []
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for node in body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            if isinstance(value, ast.Call) and value.args:  # frozenset({...}), tuple([...])
                value = value.args[0]
            if not isinstance(value, ast.Tuple | ast.List | ast.Set):
                continue
            strings = [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if strings and len(strings) == len(value.elts) and set(strings) <= known:
                found.append((node.lineno, ast.unparse(targets[0])))
    return found


def test_no_module_redefines_an_event_type_set() -> None:
    """``ranking.NEGATIVE_TYPES`` once drifted from ``schema.NEGATIVE_TYPES``; this finds any copy."""
    offenders = []
    for folder in ("components", "dags"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "components" / "core" / "schema.py":
                continue
            for line, name in _event_type_literals(ast.parse(path.read_text())):
                offenders.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert not offenders, "import these from components.core.schema instead:\n" + "\n".join(offenders)


def test_the_scan_finds_a_redefinition() -> None:
    tree = ast.parse(
        'NEGATIVE_TYPES: tuple[str, ...] = ("skip", "hide", "report")\n'
        "class P:\n    kinds = frozenset({'like', 'share'})\n"
        'HEADS = ("engaged", "like")\n'
    )
    assert [n for _, n in _event_type_literals(tree)] == ["NEGATIVE_TYPES", "kinds"]
