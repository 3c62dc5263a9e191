"""Document access groups: which documents a set of groups may read, as a clause of the filter language.

A document carries access groups (``ChunkMeta.acl`` on each of its chunks); one without groups of its own
belongs to the knowledge base's default groups (the ``acl_default`` setting, read at query time, so changing it
needs no re-ingest). The group ``*`` means everyone. A viewer is a set of groups, or None for an unrestricted
one (the local owner, an API key created without ``--groups``).

Enforcement composes :meth:`AccessPolicy.clause` with the user's filter under ``$and``: whatever the user's
filter says (``$or``, ``$not``, conditions on ``acl`` itself), it can only narrow what the groups allow.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ragtune.errors import ConfigError
from ragtune.store.filters import validate_filter

#: The chunk metadata field that holds a document's access groups.
ACL_FIELD = "acl"
#: The chunk metadata field that holds why the injection scanner flagged a chunk.
INJECTION_FIELD = "injection"
#: The group every viewer belongs to.
EVERYONE = "*"

_GROUP_RE = re.compile(r"^[\w.:@-]{1,64}$")

Groups = frozenset[str]


def parse_groups(value: str | Iterable[str] | None) -> list[str] | None:
    """``"hr, legal"`` or ``["hr", "legal"]`` as a sorted list of unique group names; None or empty gives None.

    Raises:
        ConfigError: a name that is not 1–64 letters, digits or ``_ . : @ -`` (or ``*``).
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    groups = sorted({str(g).strip() for g in items if str(g).strip()})
    for group in groups:
        if group != EVERYONE and not _GROUP_RE.fullmatch(group):
            raise ConfigError(f"invalid access group {group!r} — use up to 64 letters, digits or '_ . : @ -' "
                              f"(or '*' for everyone), separated by commas, e.g. 'hr,legal'")
    return groups or None


def viewer_groups(value: str | Iterable[str] | None) -> Groups | None:
    """The groups a viewer acts as (None: unrestricted). ``*`` is what documents grant, never what a viewer
    claims; an empty string is a viewer in no group, who sees only documents open to everyone."""
    if value is None:
        return None
    groups = parse_groups(value) or []
    if EVERYONE in groups:
        raise ConfigError("'*' is not a group a viewer can act as — name the viewer's groups, e.g. --as-groups hr")
    return frozenset(groups)


@dataclass(frozen=True)
class AccessPolicy:
    """A knowledge base's access rules: the groups of documents without their own (``default``), and whether
    chunks the injection scanner flagged are kept out of retrieval (``exclude_flagged``)."""

    default: tuple[str, ...] = ("all",)
    exclude_flagged: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", tuple(parse_groups(self.default) or ()))

    def document_groups(self, groups: Iterable[str] | None) -> tuple[str, ...]:
        """A document's effective groups: its own, or the default when it has none."""
        own = tuple(groups or ())
        return own if own else self.default

    def allows(self, document_groups: Iterable[str] | None, viewer: Groups | None) -> bool:
        """Whether a viewer (None: unrestricted) may read a document with these groups (None: the default)."""
        if viewer is None:
            return True
        effective = self.document_groups(document_groups)
        return EVERYONE in effective or not viewer.isdisjoint(effective)

    def clause(self, viewer: Groups | None) -> dict[str, Any] | None:
        """The filter clause selecting what ``viewer`` may read (None: no restriction at all)."""
        parts: list[dict[str, Any]] = []
        if viewer is not None:
            grant: dict[str, Any] = {ACL_FIELD: {"$in": [*sorted(viewer), EVERYONE]}}
            parts.append({"$or": [grant, {ACL_FIELD: None}]} if self.allows(None, viewer) else grant)
        if self.exclude_flagged:
            parts.append({INJECTION_FIELD: None})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def restrict(self, filter: Mapping[str, Any] | str | None, viewer: Groups | None) -> dict[str, Any] | None:
        """The user's filter, validated, narrowed to what ``viewer`` may read: ``{"$and": [access, filter]}``."""
        spec = validate_filter(filter)
        access = self.clause(viewer)
        if access is None:
            return spec
        if spec is None:
            return access
        return {"$and": [access, spec]}


@dataclass(frozen=True)
class FolderRules:
    """Access groups by path pattern (the ``acl_rules`` table of ragtune.toml): ``{"hr/*": ["hr"]}``.

    A pattern matches the end of a file's path (``hr/*`` matches ``/data/docs/hr/pay.md``; ``*`` also spans
    folders, so it matches ``hr/2026/pay.md`` too; ``hr`` alone means ``hr/*``). When several match, the last
    one written wins, as in .gitattributes.
    """

    rules: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, rules: Mapping[str, Any] | None) -> FolderRules:
        parsed = []
        for pattern, groups in (rules or {}).items():
            if not isinstance(pattern, str) or not pattern.strip("/"):
                raise ConfigError(f"acl_rules: {pattern!r} is not a path pattern — write e.g. \"hr/*\" = [\"hr\"]")
            names = parse_groups(groups if isinstance(groups, (str, list, tuple)) else None)
            if names is None:
                raise ConfigError(f"acl_rules.{pattern!r}: give a list of groups, e.g. \"{pattern}\" = [\"hr\"]")
            pattern = pattern.strip("/")
            # A folder named without a wildcard covers what is inside it.
            if not any(ch in pattern for ch in "*?["):
                pattern += "/*"
            parsed.append((pattern, tuple(names)))
        return cls(tuple(parsed))

    def groups_for(self, path: str) -> list[str] | None:
        """The groups of the last rule matching ``path`` (a file path or URI), or None when none does."""
        parts = PurePosixPath(path.replace("\\", "/")).parts
        tails = ["/".join(parts[i:]) for i in range(len(parts))]
        found: list[str] | None = None
        for pattern, groups in self.rules:
            if any(fnmatch.fnmatchcase(tail, pattern) for tail in tails):
                found = list(groups)
        return found
