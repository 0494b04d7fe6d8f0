"""Repository filters of the registry scanning and replication configurations.

* ``WILDCARD`` filters (registry scanning rules, spec §7.5): a filter without ``*``
  matches every repository whose name *contains* it; a filter with ``*`` must match the
  whole name, ``*`` standing for any run of characters (possibly empty).
* ``PREFIX_MATCH`` filters (replication rules, spec §8): the repository name starts with
  the filter. (A replication rule without filters applies to every repository; that is
  the caller's concern.)

Comparisons are exact and case-sensitive: repository names and filters are lower case by
their patterns anyway.
"""

from __future__ import annotations

import functools
import re

__all__ = ["prefix_filter_matches", "wildcard_filter_matches"]


def wildcard_filter_matches(filter: str, repository_name: str) -> bool:
    """Whether the scanning ``WILDCARD`` ``filter`` selects ``repository_name``."""
    if "*" not in filter:
        return filter in repository_name
    return _wildcard_regex(filter).fullmatch(repository_name) is not None


def prefix_filter_matches(prefix: str, repository_name: str) -> bool:
    """Whether the replication ``PREFIX_MATCH`` filter ``prefix`` selects ``repository_name``."""
    return repository_name.startswith(prefix)


@functools.lru_cache(maxsize=1024)
def _wildcard_regex(filter: str) -> re.Pattern[str]:
    # Filters are few and reused for every repository; compile each once.
    return re.compile(".*".join(re.escape(part) for part in filter.split("*")), re.DOTALL)
