"""AWS Signature Version 4: signing for the SDK, verification for the server.

Written from the AWS SigV4 documentation ("Create a signed AWS API request", "Elements of an
AWS API request signature", "Authenticating requests: using query parameters"). The rules
implemented are those for services other than S3:

* The canonical URI is the request path with ``.``/``..`` segments and empty segments
  removed, then URI-encoded with everything but unreserved characters and ``/`` escaped.
  This encoding is applied to the path *as it travels on the wire* (already percent-encoded),
  which is what the documentation calls encoding each segment twice and what botocore does:
  ``/a%20b`` is canonicalised as ``/a%2520b``.
* The canonical query decodes each name and value and re-encodes it the RFC 3986 way
  (``A-Za-z0-9-_.~`` kept, everything else ``%XX`` upper-case), then sorts by name and value.
* Header names are lower-cased; values are trimmed and inner whitespace runs collapsed to one
  space; repeated headers are joined with a comma in the order received.

Both faces share these helpers so the signer and the verifier cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit, urlunsplit

from openecr.errors import (
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_PAYLOAD_SHA256",
    "MAX_PRESIGN_EXPIRES",
    "UNSIGNED_PAYLOAD",
    "Credentials",
    "VerifiedRequest",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "credential_scope",
    "derive_signing_key",
    "format_amz_date",
    "presign_url",
    "read_unverified_scope",
    "sign_request",
    "signature",
    "string_to_sign",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
#: The longest validity a presigned URL may ask for (seven days, in seconds).
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

_TERMINATOR = "aws4_request"
_QUERY_SAFE = "-_.~"
_PATH_SAFE = "/~"
# The query parameters of a presigned request; the signer replaces any it finds in the URL.
_PRESIGN_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    }
)
# Headers the signer replaces rather than signs as given.
_SIGNER_OWNED_HEADERS = frozenset({"authorization", "x-amz-date", "x-amz-security-token"})
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_UNKNOWN_KEY = "The security token included in the request is invalid."


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair, optionally with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a successfully verified request proved.

    ``region`` and ``service`` come from the signed credential scope; the caller decides
    whether they are acceptable (``verify_request`` can check them itself when given
    ``expected_region`` / ``expected_service``). ``session_token`` is the
    ``X-Amz-Security-Token`` the request carried, if any; checking it against the access key
    is the caller's business. ``presigned`` tells the query-string form from the header form.
    """

    access_key_id: str
    region: str
    service: str
    signed_at: datetime
    date_stamp: str
    session_token: str | None = None
    presigned: bool = False


# --- building blocks ----------------------------------------------------------------------


def format_amz_date(moment: datetime) -> str:
    """``moment`` in the ISO 8601 basic form SigV4 uses (``20150830T123600Z``), in UTC.

    A naive datetime is taken to be UTC already.
    """
    d = _as_utc(moment)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}T{d.hour:02d}{d.minute:02d}{d.second:02d}Z"


def canonical_uri(path: str) -> str:
    """The canonical URI of a wire (still percent-encoded) request path, non-S3 rules.

    Dot segments and empty segments are removed (a trailing slash survives), then the
    result is URI-encoded once more, keeping only unreserved characters and ``/``.
    """
    if path == "/" or not path:
        return "/"
    return quote(_remove_dot_segments(path), safe=_PATH_SAFE)


def canonical_query_string(query: str) -> str:
    """The canonical form of a raw query string: RFC 3986 encoded, sorted by name, value.

    Names and values are percent-decoded (``+`` is a literal plus, not a space) and encoded
    again, so equivalent spellings of the same query give the same canonical form. A name
    without ``=`` has an empty value; empty ``&&`` segments are dropped.
    """
    if not query:
        return ""
    return "&".join(f"{name}={value}" for name, value in sorted(_encoded_query_pairs(query)))


def credential_scope(date_stamp: str, region: str, service: str) -> str:
    """``<yyyymmdd>/<region>/<service>/aws4_request``."""
    return f"{date_stamp}/{region}/{service}/{_TERMINATOR}"


def canonical_request(
    method: str,
    canonical_uri: str,
    canonical_query: str,
    headers: Mapping[str, str | Sequence[str]],
    signed_header_names: Iterable[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request.

    ``headers`` maps header names (any case) to a value, or to a sequence of values for a
    header that occurs more than once. Only ``signed_header_names`` are used; they are
    lower-cased, de-duplicated and sorted. A signed header absent from ``headers`` has an
    empty value. ``canonical_uri`` and ``canonical_query`` are already canonical (see
    :func:`canonical_uri` and :func:`canonical_query_string`).
    """
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items():
        values = grouped.setdefault(name.lower(), [])
        if isinstance(value, str):
            values.append(value)
        else:
            values.extend(value)
    names = sorted({name.lower() for name in signed_header_names})
    return _canonical_request(method, canonical_uri, canonical_query, grouped, names, payload_hash)


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    """``AWS4-HMAC-SHA256 \\n <amz_date> \\n <scope> \\n hex(sha256(canonical_request))``."""
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@lru_cache(maxsize=512)
def derive_signing_key(secret: str, date_stamp: str, region: str, service: str) -> bytes:
    """The day's signing key: HMAC chain over date, region, service and ``aws4_request``.

    Cached: the same key signs every request of a client for a whole day, and the server
    needs it on every request.
    """
    key = _hmac(("AWS4" + secret).encode("utf-8", "surrogateescape"), date_stamp)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, _TERMINATOR)


def signature(signing_key: bytes, string_to_sign: str) -> str:
    """The hex HMAC-SHA256 of ``string_to_sign`` under ``signing_key``."""
    message = string_to_sign.encode("utf-8", "surrogateescape")
    return hmac.digest(signing_key, message, "sha256").hex()


# --- signing (SDK) -----------------------------------------------------------------------


def sign_request(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """Signs a request with the ``Authorization`` header; returns the headers to send.

    The result is ``headers`` (minus any stale ``Authorization``, ``X-Amz-Date`` and
    ``X-Amz-Security-Token``) plus ``X-Amz-Date``, ``Authorization`` and, for temporary
    credentials, ``X-Amz-Security-Token``. Signed are ``host``, ``content-type`` and every
    ``x-amz-*`` header. Without a ``Host`` in ``headers`` the host signed is the one an HTTP
    client derives from ``url`` (lower-case, default port omitted) and none is added.
    """
    amz_date = format_amz_date(now)
    date_stamp = amz_date[:8]
    out = {k: v for k, v in headers.items() if k.lower() not in _SIGNER_OWNED_HEADERS}
    out["X-Amz-Date"] = amz_date
    if credentials.session_token is not None:
        out["X-Amz-Security-Token"] = credentials.session_token

    grouped = _group_headers(out)
    if "host" not in grouped:
        grouped["host"] = [_host_from_url(url)]
    signed = sorted(
        name
        for name in grouped
        if name == "host" or name == "content-type" or name.startswith("x-amz-")
    )
    parts = urlsplit(url)
    request = _canonical_request(
        method,
        canonical_uri(parts.path),
        canonical_query_string(parts.query),
        grouped,
        signed,
        hashlib.sha256(body).hexdigest(),
    )
    scope = credential_scope(date_stamp, region, service)
    key = derive_signing_key(credentials.secret_access_key, date_stamp, region, service)
    sig = signature(key, string_to_sign(amz_date, scope, request))
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={sig}"
    )
    return out


def presign_url(
    *,
    method: str,
    url: str,
    credentials: Credentials,
    region: str,
    service: str,
    expires_in: int,
    now: datetime,
) -> str:
    """A query-string signed URL, valid ``expires_in`` seconds (1 to 7 days) from ``now``.

    Only ``host`` is signed and the payload is ``UNSIGNED-PAYLOAD``, so the URL can be
    followed by any HTTP client. Existing query parameters are kept (and signed); stale
    ``X-Amz-*`` authentication parameters are replaced.
    """
    if not 1 <= expires_in <= MAX_PRESIGN_EXPIRES:
        raise ValueError(f"expires_in must be between 1 and {MAX_PRESIGN_EXPIRES} seconds")
    amz_date = format_amz_date(now)
    date_stamp = amz_date[:8]
    scope = credential_scope(date_stamp, region, service)
    parts = urlsplit(url)

    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote(pair.partition("=")[0]) not in _PRESIGN_PARAMS
    ]
    auth = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key_id}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_in)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if credentials.session_token is not None:
        auth.append(("X-Amz-Security-Token", credentials.session_token))
    kept.extend(f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_QUERY_SAFE)}" for k, v in auth)
    query = "&".join(kept)

    request = _canonical_request(
        method,
        canonical_uri(parts.path),
        canonical_query_string(query),
        {"host": [_host_from_url(url)]},
        ["host"],
        UNSIGNED_PAYLOAD,
    )
    key = derive_signing_key(credentials.secret_access_key, date_stamp, region, service)
    sig = signature(key, string_to_sign(amz_date, scope, request))
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, f"{query}&X-Amz-Signature={sig}", "")
    )


# --- verification (server) ---------------------------------------------------------------


def verify_request(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
    expected_region: str | None = None,
    expected_service: str | None = None,
) -> VerifiedRequest:
    """Checks a SigV4-signed request, in the header form or the presigned query form.

    ``path`` and ``query_string`` are the raw request-target parts, still percent-encoded
    (with aiohttp: ``request.raw_path.partition("?")``). ``headers`` may be any mapping;
    names are matched case-insensitively and repeated headers (a multidict's ``items()``)
    are joined. ``lookup_secret`` maps an access key id to its secret, or ``None`` when the
    key is unknown; it may raise an ``ECRError`` of its own (such as ``ExpiredTokenError``).

    Raises ``MissingAuthenticationTokenError``, ``IncompleteSignatureError``,
    ``InvalidSignatureError`` or ``UnrecognizedClientError`` with AWS's wording.
    """
    grouped = _group_headers(headers)
    utc_now = _as_utc(now)
    authorization = grouped.get("authorization")
    if authorization is not None:
        return _verify_header_form(
            authorization,
            method=method,
            path=path,
            query_string=query_string,
            grouped=grouped,
            body=body,
            lookup_secret=lookup_secret,
            now=utc_now,
            max_skew=max_skew,
            expected_region=expected_region,
            expected_service=expected_service,
        )
    if query_string and "X-Amz-Signature" in query_string:
        result = _verify_query_form(
            method=method,
            path=path,
            query_string=query_string,
            grouped=grouped,
            body=body,
            lookup_secret=lookup_secret,
            now=utc_now,
            max_skew=max_skew,
            expected_region=expected_region,
            expected_service=expected_service,
        )
        if result is not None:
            return result
    raise MissingAuthenticationTokenError("Missing Authentication Token")


def read_unverified_scope(
    headers: Mapping[str, str], query_string: str
) -> tuple[str, str, str, str] | None:
    """``(access_key_id, date_stamp, region, service)`` from the credential, unverified.

    Reads the ``Credential`` of an ``Authorization: AWS4-HMAC-SHA256`` header, else the
    ``X-Amz-Credential`` query parameter. ``None`` when there is none or it is malformed.
    Nothing is checked: use it only where any signature is accepted (the dev mode).
    """
    credential: str | None = None
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if authorization is not None:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != ALGORITHM:
            return None
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep and name == "Credential":
                credential = value.strip()
                break
    elif query_string:
        for pair in query_string.split("&"):
            name, _, value = pair.partition("=")
            if unquote(name) == "X-Amz-Credential":
                credential = unquote(value)
                break
    if credential is None:
        return None
    elements = credential.split("/")
    if len(elements) != 5 or elements[4] != _TERMINATOR or not all(elements[:4]):
        return None
    return elements[0], elements[1], elements[2], elements[3]


def _verify_header_form(
    authorization: list[str],
    *,
    method: str,
    path: str,
    query_string: str,
    grouped: dict[str, list[str]],
    body: bytes,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta,
    expected_region: str | None,
    expected_service: str | None,
) -> VerifiedRequest:
    header = ", ".join(authorization)
    algorithm, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    if algorithm == ALGORITHM:
        for part in rest.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                digest = base64.b64encode(
                    hashlib.sha256(part.encode("utf-8", "surrogateescape")).digest()
                ).decode()
                raise IncompleteSignatureError(
                    "Invalid key=value pair (missing equal-sign) in Authorization header "
                    f"(hashed with SHA-256 and encoded with Base64): '{digest}'."
                )
            params[name.strip()] = value.strip()
    elif algorithm.startswith("AWS4-") and "Credential=" in rest:
        raise IncompleteSignatureError(
            f"Unsupported AWS 'algorithm': '{algorithm}'; only '{ALGORITHM}' is supported. "
            f"Authorization={header}"
        )

    date_source, date_value = _request_date(grouped)
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if date_value is None:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems or date_source is None or date_value is None:
        raise IncompleteSignatureError(f"{' '.join(problems)} Authorization={header}")

    access_key_id, date_stamp, region, service = _parse_credential(params["Credential"])
    signed_headers = params["SignedHeaders"].lower().split(";")
    if "host" not in signed_headers:
        raise IncompleteSignatureError(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    signed_at = _parse_request_date(date_source, date_value)
    amz_date = format_amz_date(signed_at)
    _check_scope(
        date_stamp, amz_date, date_source, region, service, expected_region, expected_service
    )
    _check_skew(amz_date, signed_at, now, max_skew)

    secret = lookup_secret(access_key_id)
    if secret is None:
        raise UnrecognizedClientError(_UNKNOWN_KEY)

    payload_hash = hashlib.sha256(body).hexdigest()
    declared = grouped.get("x-amz-content-sha256")
    if declared is not None and declared[0] != payload_hash:
        raise InvalidSignatureError(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )

    request = _canonical_request(
        method,
        canonical_uri(path),
        canonical_query_string(query_string),
        grouped,
        sorted(set(signed_headers)),
        payload_hash,
    )
    scope = credential_scope(date_stamp, region, service)
    key = derive_signing_key(secret, date_stamp, region, service)
    expected = signature(key, string_to_sign(amz_date, scope, request))
    if not _same_signature(expected, params["Signature"]):
        raise InvalidSignatureError(_SIGNATURE_MISMATCH)
    token = grouped.get("x-amz-security-token")
    return VerifiedRequest(
        access_key_id=access_key_id,
        region=region,
        service=service,
        signed_at=signed_at,
        date_stamp=date_stamp,
        session_token=token[0] if token else None,
        presigned=False,
    )


def _verify_query_form(
    *,
    method: str,
    path: str,
    query_string: str,
    grouped: dict[str, list[str]],
    body: bytes,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta,
    expected_region: str | None,
    expected_service: str | None,
) -> VerifiedRequest | None:
    # One pass: the decoded X-Amz-* parameters, and the encoded pairs that get signed.
    auth: dict[str, str] = {}
    signed_pairs: list[tuple[str, str]] = []
    provided: str | None = None
    for raw in query_string.split("&"):
        if not raw:
            continue
        raw_name, _, raw_value = raw.partition("=")
        name_bytes = unquote_to_bytes(raw_name)
        value_bytes = unquote_to_bytes(raw_value)
        if name_bytes.startswith(b"X-Amz-"):
            name = name_bytes.decode("utf-8", "replace")
            if name == "X-Amz-Signature":
                provided = value_bytes.decode("utf-8", "replace")
                continue
            auth[name] = value_bytes.decode("utf-8", "replace")
        signed_pairs.append(
            (quote(name_bytes, safe=_QUERY_SAFE), quote(value_bytes, safe=_QUERY_SAFE))
        )
    if provided is None:
        return None

    for required in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Date"):
        if not auth.get(required):
            raise IncompleteSignatureError(
                f"AWS query-string parameters must include '{required}'. "
                "Re-examine the query-string parameters."
            )
    if auth["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignatureError(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    access_key_id, date_stamp, region, service = _parse_credential(auth["X-Amz-Credential"])
    signed_headers = auth["X-Amz-SignedHeaders"].lower().split(";")
    if "host" not in signed_headers:
        raise IncompleteSignatureError(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    amz_date = auth["X-Amz-Date"]
    signed_at = _parse_amz_date(amz_date)
    if signed_at is None:
        raise IncompleteSignatureError(_bad_date_message(amz_date))
    _check_scope(
        date_stamp, amz_date, "x-amz-date", region, service, expected_region, expected_service
    )

    expires_text = auth.get("X-Amz-Expires")
    if expires_text is None:
        _check_skew(amz_date, signed_at, now, max_skew)
    else:
        if not (expires_text.isascii() and expires_text.isdigit()):
            raise IncompleteSignatureError("X-Amz-Expires should be a number")
        expires = int(expires_text)
        if expires > MAX_PRESIGN_EXPIRES:
            raise IncompleteSignatureError(
                f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGN_EXPIRES}"
            )
        _check_not_future(amz_date, signed_at, now, max_skew)
        if now > signed_at + timedelta(seconds=expires):
            raise InvalidSignatureError(
                f"Signature expired: {amz_date} is now earlier than "
                f"{format_amz_date(now - timedelta(seconds=expires))} "
                f"({format_amz_date(now)} - {expires} sec.)"
            )

    secret = lookup_secret(access_key_id)
    if secret is None:
        raise UnrecognizedClientError(_UNKNOWN_KEY)

    # Presigned URLs for S3-style downloads sign UNSIGNED-PAYLOAD; generic SigV4 presigners
    # (botocore's SigV4QueryAuth) sign the body's hash. Both are accepted.
    body_hash = hashlib.sha256(body).hexdigest()
    declared = grouped.get("x-amz-content-sha256")
    if declared is not None:
        if declared[0] not in (body_hash, UNSIGNED_PAYLOAD):
            raise InvalidSignatureError(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        candidates: tuple[str, ...] = (declared[0],)
    else:
        candidates = (UNSIGNED_PAYLOAD, body_hash)

    uri = canonical_uri(path)
    query = "&".join(f"{name}={value}" for name, value in sorted(signed_pairs))
    names = sorted(set(signed_headers))
    scope = credential_scope(date_stamp, region, service)
    key = derive_signing_key(secret, date_stamp, region, service)
    for payload_hash in candidates:
        request = _canonical_request(method, uri, query, grouped, names, payload_hash)
        if _same_signature(signature(key, string_to_sign(amz_date, scope, request)), provided):
            return VerifiedRequest(
                access_key_id=access_key_id,
                region=region,
                service=service,
                signed_at=signed_at,
                date_stamp=date_stamp,
                session_token=auth.get("X-Amz-Security-Token"),
                presigned=True,
            )
    raise InvalidSignatureError(_SIGNATURE_MISMATCH)


# --- helpers --------------------------------------------------------------------------------


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("utf-8", "surrogateescape"), "sha256")


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _trimall(value: str) -> str:
    return " ".join(value.split())


def _group_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    # items() of a multidict yields every occurrence, so repeated headers survive.
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items():
        key = name.lower()
        values = grouped.get(key)
        if values is None:
            grouped[key] = [value]
        else:
            values.append(value)
    return grouped


def _canonical_request(
    method: str,
    uri: str,
    query: str,
    grouped: Mapping[str, list[str]],
    names: Sequence[str],
    payload_hash: str,
) -> str:
    lines = [method.upper(), uri, query]
    for name in names:
        values = grouped.get(name)
        if values is None:
            lines.append(f"{name}:")
        elif len(values) == 1:
            lines.append(f"{name}:{_trimall(values[0])}")
        else:
            lines.append(f"{name}:{','.join(_trimall(v) for v in values)}")
    lines.append("")
    lines.append(";".join(names))
    lines.append(payload_hash)
    return "\n".join(lines)


def _encoded_query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for raw in query.split("&"):
        if not raw:
            continue
        name, _, value = raw.partition("=")
        pairs.append(
            (
                quote(unquote_to_bytes(name), safe=_QUERY_SAFE),
                quote(unquote_to_bytes(value), safe=_QUERY_SAFE),
            )
        )
    return pairs


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 section 5.2.4, plus the AWS rule that empty segments ("//") collapse.
    segments: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def _host_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None and port != default:
        host = f"{host}:{port}"
    return host


def _request_date(grouped: Mapping[str, list[str]]) -> tuple[str | None, str | None]:
    # X-Amz-Date wins over Date, as in AWS.
    values = grouped.get("x-amz-date")
    if values:
        return "x-amz-date", values[0].strip()
    values = grouped.get("date")
    if values:
        return "date", values[0].strip()
    return None, None


def _parse_amz_date(value: str) -> datetime | None:
    if (
        len(value) != 16
        or value[8] != "T"
        or value[15] != "Z"
        or not value.isascii()
        or not value[:8].isdigit()
        or not value[9:15].isdigit()
    ):
        return None
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _bad_date_message(value: str) -> str:
    return (
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _parse_request_date(source: str, value: str) -> datetime:
    if source == "x-amz-date":
        parsed = _parse_amz_date(value)
        if parsed is None:
            raise IncompleteSignatureError(_bad_date_message(value))
        return parsed
    try:
        return _as_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        raise IncompleteSignatureError(
            f"Date header must be an RFC 1123 date. Got '{value}'."
        ) from None


def _parse_credential(credential: str) -> tuple[str, str, str, str]:
    elements = credential.split("/")
    if len(elements) != 5:
        raise IncompleteSignatureError(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'"
        )
    access_key_id, date_stamp, region, service, terminator = elements
    if terminator != _TERMINATOR:
        raise IncompleteSignatureError(
            f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', "
            f"not '{terminator}'."
        )
    if not access_key_id:
        raise IncompleteSignatureError(f"Credential must name an access key id, got '{credential}'")
    if not region:
        raise IncompleteSignatureError("Credential should be scoped to a valid region, not ''.")
    if not service:
        raise IncompleteSignatureError("Credential should be scoped to a valid service, not ''.")
    return access_key_id, date_stamp, region, service


def _check_scope(
    date_stamp: str,
    amz_date: str,
    date_source: str,
    region: str,
    service: str,
    expected_region: str | None,
    expected_service: str | None,
) -> None:
    if date_stamp != amz_date[:8]:
        raise InvalidSignatureError(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date_stamp}' != '{amz_date[:8]}', from '{date_source}'."
        )
    if expected_region is not None and region != expected_region:
        raise InvalidSignatureError(
            f"Credential should be scoped to a valid region, not '{region}'."
        )
    if expected_service is not None and service != expected_service:
        raise InvalidSignatureError(
            f"Credential should be scoped to correct service: '{expected_service}'."
        )


def _format_skew(skew: timedelta) -> str:
    seconds = int(skew.total_seconds())
    if seconds % 60 == 0:
        return f"{seconds // 60} min."
    return f"{seconds} sec."


def _check_not_future(amz_date: str, signed_at: datetime, now: datetime, skew: timedelta) -> None:
    if signed_at > now + skew:
        raise InvalidSignatureError(
            f"Signature not yet current: {amz_date} is still later than "
            f"{format_amz_date(now + skew)} ({format_amz_date(now)} + {_format_skew(skew)})"
        )


def _check_skew(amz_date: str, signed_at: datetime, now: datetime, skew: timedelta) -> None:
    if signed_at < now - skew:
        raise InvalidSignatureError(
            f"Signature expired: {amz_date} is now earlier than "
            f"{format_amz_date(now - skew)} ({format_amz_date(now)} - {_format_skew(skew)})"
        )
    _check_not_future(amz_date, signed_at, now, skew)


def _same_signature(expected: str, provided: str) -> bool:
    return hmac.compare_digest(
        expected.encode("ascii"), provided.encode("utf-8", "surrogateescape")
    )
