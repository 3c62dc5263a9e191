"""Access groups as logic: group names, the policy's clause, composition with user filters, folder rules."""

from __future__ import annotations

import pytest

from ragtune.errors import ConfigError
from ragtune.guard.acl import AccessPolicy, FolderRules, parse_groups, viewer_groups
from ragtune.store.filters import matches

pytestmark = pytest.mark.unit

POLICY = AccessPolicy(default=("all",))
DOCS = {"hr": ["hr"], "legal": ["legal"], "both": ["hr", "legal"], "open": ["*"], "plain": None}


def visible(policy: AccessPolicy, filter: object, viewer: frozenset[str] | None) -> set[str]:
    spec = policy.restrict(filter, viewer)  # type: ignore[arg-type]
    return {name for name, acl in DOCS.items() if matches(spec, {"acl": acl, "source_type": "md"})}


def test_parse_groups():
    assert parse_groups("legal, hr,hr") == ["hr", "legal"]
    assert parse_groups(["b", "a"]) == ["a", "b"]
    assert parse_groups("") is None and parse_groups(None) is None
    with pytest.raises(ConfigError, match="invalid access group"):
        parse_groups("hr; drop table")
    assert viewer_groups("") == frozenset()
    assert viewer_groups(None) is None
    with pytest.raises(ConfigError, match="not a group a viewer can act as"):
        viewer_groups("*")


@pytest.mark.parametrize(("viewer", "expected"), [
    (None, {"hr", "legal", "both", "open", "plain"}),
    (frozenset({"hr"}), {"hr", "both", "open"}),
    (frozenset({"all"}), {"open", "plain"}),
    (frozenset({"hr", "all"}), {"hr", "both", "open", "plain"}),
    (frozenset(), {"open"}),
])
def test_viewers_see_their_groups_everyone_and_the_default(viewer, expected):
    assert visible(POLICY, None, viewer) == expected
    for name, acl in DOCS.items():
        assert POLICY.allows(acl, viewer) == (name in expected)


@pytest.mark.parametrize("attack", [
    {"acl": {"$contains": "hr"}},
    {"$or": [{"acl": {"$in": ["hr", "legal"]}}, {"acl": None}, {"source_type": "md"}]},
    {"$not": {"acl": {"$in": ["all"]}}},
    {"acl": {"$exists": True}},
    {"$or": [{"source_type": "md"}, {"source_type": {"$ne": "md"}}]},
    '{"$or": [{"acl": {"$nin": ["x"]}}, {"acl": null}]}',
])
def test_a_user_filter_narrows_and_never_widens(attack):
    viewer = frozenset({"all"})
    allowed = visible(POLICY, None, viewer)
    assert visible(POLICY, attack, viewer) <= allowed
    spec = POLICY.restrict(attack, viewer)
    assert spec is not None and "$and" in spec and spec["$and"][0] == POLICY.clause(viewer)


def test_unrestricted_viewers_get_the_user_filter_unchanged():
    assert POLICY.restrict({"source_type": "md"}, None) == {"source_type": "md"}
    assert POLICY.clause(None) is None


def test_default_everyone_and_excluding_flagged_chunks():
    open_policy = AccessPolicy(default=("*",), exclude_flagged=True)
    assert open_policy.allows(None, frozenset({"legal"}))
    clause = open_policy.clause(None)
    assert clause == {"injection": None}
    assert not matches(clause, {"injection": "rules: override"})
    assert matches(open_policy.clause(frozenset({"x"})), {"acl": None, "injection": None})


def test_folder_rules_match_path_ends_and_the_last_rule_wins():
    rules = FolderRules.from_settings({"hr": ["hr"], "legal/*.md": ["legal"], "hr/board/*": ["board", "hr"]})
    assert rules.groups_for("/data/docs/hr/pay.md") == ["hr"]
    assert rules.groups_for("/data/docs/hr/2026/pay.md") == ["hr"]
    assert rules.groups_for("/data/docs/hr/board/minutes.md") == ["board", "hr"]
    assert rules.groups_for("/data/legal/nda.md") == ["legal"]
    assert rules.groups_for("/data/legal/nda.pdf") is None
    assert rules.groups_for("/data/shr/x.md") is None  # "hr" is a folder name, not a suffix of one
    with pytest.raises(ConfigError, match="give a list of groups"):
        FolderRules.from_settings({"hr": 3})
