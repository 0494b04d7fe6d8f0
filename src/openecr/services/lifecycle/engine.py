"""Evaluate a lifecycle policy against a snapshot of a repository (spec §6.3).

One pure function, shared by the lifecycle preview and by enforcement, so both always agree
on which images a policy expires. The algorithm is the one of §6.3:

* rules run in ascending ``rulePriority``, all against the same snapshot;
* a rule *selects* images by tag status and its prefix or pattern list, then picks
  candidates among them: for ``imageCountMoreThan`` all but the ``countNumber`` newest, for
  ``sinceImagePushed`` those pushed strictly more than ``countNumber`` days before ``now``;
* a candidate is expired by the rule unless an earlier rule already expired it or selected
  it (an image selected by a higher-priority rule is protected from every lower rule, yet
  lower rules still count it), so each image is expired by at most one rule.

Decisions where AWS is silent:

* Images with the same ``pushed_at`` are ordered by digest: in newest-first order the
  larger digest counts as the newer one, so ``imageCountMoreThan`` keeps larger digests and
  expires smaller ones first.
* The result is ordered by ``pushed_at`` ascending, then digest ascending -- oldest first,
  which is exactly the reverse of the newest-first order above.
* Age is measured against ``pushed_at`` only; ``last_pulled_at`` is carried for the archive
  count types, which the policy parser rejects (see :mod:`.policy`).
* Times (``now``, every ``pushed_at``) are all datetimes, comparable with each other (all
  timezone-aware, or all naive: mixing them raises :class:`TypeError`), or all epoch
  seconds: over a large repository, building a datetime per image costs as much as the
  evaluation itself.
* An age so large that ``now`` minus it falls before ``datetime.min`` expires nothing.

Patterns are compiled once per rule and evaluation; the common shapes (``prod``, ``prod*``,
``*prod``, ``*prod*``) become plain string tests, the others a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from operator import attrgetter, methodcaller
from typing import NamedTuple

from openecr.services.lifecycle.policy import LifecyclePolicy, TagSelection

__all__ = ["Expiration", "ImageFacts", "evaluate_lifecycle_policy"]

_TagTest = Callable[[str], object]

_SECONDS_PER_DAY = 86_400.0


# Named tuples rather than frozen dataclasses: a preview builds one per image, 100,000 for
# a large repository, and a frozen dataclass takes four times as long to construct.
class ImageFacts(NamedTuple):
    """What the engine needs to know about one image of the repository."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime | float  # a datetime or epoch seconds, as ``now`` is
    last_pulled_at: datetime | float | None = None


class Expiration(NamedTuple):
    """``image`` is expired by the rule with priority ``rule_priority``."""

    image: ImageFacts
    rule_priority: int


def evaluate_lifecycle_policy(
    policy: LifecyclePolicy, images: Iterable[ImageFacts], now: datetime | float
) -> list[Expiration]:
    """Return the images ``policy`` expires at ``now``, oldest first.

    Each image appears at most once, with the priority of the rule that expires it. The
    result is sorted by ``pushed_at`` ascending, then by digest ascending.
    """
    # Newest first; equal push times put the larger digest first (it counts as newer).
    # Two stable sorts beat one sort on (pushed_at, digest) tuples by more than 2x.
    ordered = sorted(images, key=attrgetter("digest"), reverse=True)
    ordered.sort(key=attrgetter("pushed_at"), reverse=True)
    tags_of = [image.tags for image in ordered]
    tagged = [index for index, tags in enumerate(tags_of) if tags]
    untagged = [index for index, tags in enumerate(tags_of) if not tags]

    expired_by: list[int | None] = [None] * len(ordered)
    protected = bytearray(len(ordered))
    rules = sorted(policy.rules, key=attrgetter("priority"))
    for position, rule in enumerate(rules):
        selection = rule.selection
        if selection.tag_status == "any":
            selected: Sequence[int] = range(len(ordered))
        elif selection.tag_status == "untagged":
            selected = untagged
        else:
            selected = _select_tagged(selection, tags_of, tagged)
        for index in _candidates(selection, ordered, selected, now):
            # An expired image was selected by its rule, so it is protected from later rules.
            if not protected[index]:
                expired_by[index] = rule.priority
        if position + 1 < len(rules):
            for index in selected:
                protected[index] = 1

    expirations: list[Expiration] = []
    for index in range(len(ordered) - 1, -1, -1):
        priority = expired_by[index]
        if priority is not None:
            expirations.append(Expiration(image=ordered[index], rule_priority=priority))
    return expirations


def _select_tagged(
    selection: TagSelection, tags_of: Sequence[tuple[str, ...]], tagged: list[int]
) -> list[int]:
    """The tagged images (indexes, newest first) whose tags satisfy every list entry."""
    if selection.tag_prefixes:
        tests = [_prefix_test(prefix) for prefix in dict.fromkeys(selection.tag_prefixes)]
    else:
        tests = [_pattern_test(pattern) for pattern in dict.fromkeys(selection.tag_patterns)]
    # Every entry must match at least one tag: narrow the candidates entry by entry.
    selected = tagged
    for test in tests:
        selected = [index for index in selected if any(map(test, tags_of[index]))]
    return selected


def _candidates(
    selection: TagSelection,
    ordered: Sequence[ImageFacts],
    selected: Sequence[int],
    now: datetime | float,
) -> Sequence[int]:
    if selection.count_type == "imageCountMoreThan":
        return selected[selection.count_number :]
    cutoff: datetime | float
    if isinstance(now, datetime):
        try:
            cutoff = now - timedelta(days=selection.count_number)
        except OverflowError:
            return ()
    else:
        cutoff = now - selection.count_number * _SECONDS_PER_DAY
    # ``selected`` is newest first, so the images older than the cutoff form its tail.
    low, high = 0, len(selected)
    while low < high:
        middle = (low + high) // 2
        if ordered[selected[middle]].pushed_at < cutoff:  # type: ignore[operator]
            high = middle
        else:
            low = middle + 1
    return selected[low:]


# Tag tests return something truthy on a match. They are C-level callables (bound methods,
# ``methodcaller``, compiled patterns), so ``any(map(test, tags))`` runs no Python frame
# per tag.


def _prefix_test(prefix: str) -> _TagTest:
    return methodcaller("startswith", prefix)


def _pattern_test(pattern: str) -> _TagTest:
    """A whole-tag match for ``pattern``, where ``*`` is any run of characters."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern.__eq__
    if len(parts) == 2 and not parts[1]:
        return methodcaller("startswith", parts[0])
    if len(parts) == 2 and not parts[0]:
        return methodcaller("endswith", parts[1])
    if len(parts) == 3 and not parts[0] and not parts[2]:
        return methodcaller("__contains__", parts[1])
    return re.compile(".*".join(re.escape(part) for part in parts), re.DOTALL).fullmatch
