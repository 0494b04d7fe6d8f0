"""Opaque ``nextToken`` values for keyset pagination.

A token names the last key of the page it ends, so the next page starts strictly after
that key: items added or deleted between pages never cause repeats or gaps among the items
that stay. Tokens are bound to the listing they came from, and carry no server state, so
any replica can continue any listing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TypeVar

from openecr.errors import InvalidParameterError

__all__ = ["DEFAULT_PAGE_SIZE", "decode_next_token", "encode_next_token", "page_with_token"]

DEFAULT_PAGE_SIZE = 100


def encode_next_token(listing: str, last_key: str) -> str:
    raw = json.dumps({"l": listing, "k": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_next_token(listing: str, token: str | None) -> str | None:
    """The last key of the previous page (None for the first page).

    A foreign or damaged token is a parameter error, as in ECR.
    """
    if token is None:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if isinstance(decoded, dict) and decoded.get("l") == listing:
            key = decoded.get("k")
            if isinstance(key, str):
                return key
    except (ValueError, UnicodeError, binascii.Error):
        pass
    raise InvalidParameterError(
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'"
    )


ItemT = TypeVar("ItemT")


def page_with_token(
    fetched: list[ItemT], limit: int, listing: str, key: Callable[[ItemT], str]
) -> tuple[list[ItemT], str | None]:
    """The page and its ``nextToken`` from ``fetched``, read with a limit of ``limit + 1``:
    the extra item only says that another page follows."""
    if len(fetched) <= limit:
        return fetched, None
    page = fetched[:limit]
    return page, encode_next_token(listing, key(page[-1]))
