"""SigV4 signing and verification: AWS test vector, botocore cross-checks, error cases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.auth
import botocore.credentials
import pytest
from botocore.awsrequest import AWSRequest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from openecr.auth import (
    EMPTY_PAYLOAD_SHA256,
    UNSIGNED_PAYLOAD,
    Credentials,
    VerifiedRequest,
    canonical_query_string,
    canonical_request,
    canonical_uri,
    credential_scope,
    derive_signing_key,
    format_amz_date,
    presign_url,
    read_unverified_scope,
    sign_request,
    signature,
    string_to_sign,
    verify_request,
)
from openecr.errors import (
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)

# The AWS SigV4 test suite's credentials and clock (spec section 12).
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_CREDS = Credentials(AKID, SECRET)

ECR_URL = "https://api.ecr.us-east-1.amazonaws.com/"
ECR_HOST = "api.ecr.us-east-1.amazonaws.com"
ECR_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
}
ECR_BODY = b'{"repositoryNames": ["project-a/nginx-web-app"], "maxResults": 10}'
SECRETS = {AKID: SECRET}


def lookup(key: str) -> str | None:
    return SECRETS.get(key)


def split_url(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path or "/", parts.query


def sign_ecr(
    *,
    body: bytes = ECR_BODY,
    headers: dict[str, str] | None = None,
    credentials: Credentials = SUITE_CREDS,
    now: datetime = SUITE_TIME,
    url: str = ECR_URL,
    service: str = "ecr",
) -> dict[str, str]:
    return sign_request(
        method="POST",
        url=url,
        headers=dict(ECR_HEADERS if headers is None else headers),
        body=body,
        credentials=credentials,
        region="us-east-1",
        service=service,
        now=now,
    )


def verify(
    headers: dict[str, str] | CIMultiDictProxy[str],
    *,
    body: bytes = ECR_BODY,
    method: str = "POST",
    path: str = "/",
    query: str = "",
    now: datetime = SUITE_TIME,
    **kwargs: Any,
) -> VerifiedRequest:
    return verify_request(
        method=method,
        path=path,
        query_string=query,
        headers=headers,
        body=body,
        lookup_secret=lookup,
        now=now,
        **kwargs,
    )


def with_host(headers: dict[str, str], host: str = ECR_HOST) -> dict[str, str]:
    return {"Host": host, **headers}


@pytest.fixture
def frozen_botocore_clock() -> Iterator[None]:
    # botocore.auth reads the clock through get_current_datetime (naive UTC).
    naive = SUITE_TIME.replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=naive):
        yield


def botocore_creds(token: str | None = None) -> botocore.credentials.Credentials:
    return botocore.credentials.Credentials(AKID, SECRET, token)


# --- the get-vanilla vector, byte for byte ------------------------------------------------

VANILLA_CREQ = (
    "GET\n"
    "/\n"
    "\n"
    "host:example.amazonaws.com\n"
    "x-amz-date:20150830T123600Z\n"
    "\n"
    "host;x-amz-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
VANILLA_STS = (
    "AWS4-HMAC-SHA256\n"
    "20150830T123600Z\n"
    "20150830/us-east-1/service/aws4_request\n"
    "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
)
VANILLA_SIG = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
VANILLA_AUTHZ = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    f"SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"
)


def test_get_vanilla_building_blocks() -> None:
    creq = canonical_request(
        "GET",
        canonical_uri("/"),
        canonical_query_string(""),
        {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"},
        ["host", "x-amz-date"],
        EMPTY_PAYLOAD_SHA256,
    )
    assert creq == VANILLA_CREQ
    sts = string_to_sign(
        "20150830T123600Z", credential_scope("20150830", "us-east-1", "service"), creq
    )
    assert sts == VANILLA_STS
    key = derive_signing_key(SECRET, "20150830", "us-east-1", "service")
    assert signature(key, sts) == VANILLA_SIG


def test_get_vanilla_sign_and_verify() -> None:
    headers = sign_request(
        method="GET",
        url="https://example.amazonaws.com/",
        headers={},
        body=b"",
        credentials=SUITE_CREDS,
        region="us-east-1",
        service="service",
        now=SUITE_TIME,
    )
    assert headers == {"X-Amz-Date": "20150830T123600Z", "Authorization": VANILLA_AUTHZ}
    verified = verify({"Host": "example.amazonaws.com", **headers}, method="GET", body=b"")
    assert verified == VerifiedRequest(
        access_key_id=AKID,
        region="us-east-1",
        service="service",
        signed_at=SUITE_TIME,
        date_stamp="20150830",
    )


def test_signing_key_is_cached() -> None:
    derive_signing_key.cache_clear()
    for _ in range(3):
        derive_signing_key(SECRET, "20150830", "us-east-1", "ecr")
    info = derive_signing_key.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_format_amz_date_accepts_naive_and_other_zones() -> None:
    assert format_amz_date(datetime(2015, 8, 30, 12, 36)) == "20150830T123600Z"
    plus_two = SUITE_TIME.astimezone(datetime.now(UTC).astimezone().tzinfo)
    assert format_amz_date(plus_two) == "20150830T123600Z"


# --- cross-checks against botocore --------------------------------------------------------


@pytest.mark.usefixtures("frozen_botocore_clock")
@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEXAMPLETOKEN+/="])
def test_sign_request_matches_botocore(token: str | None) -> None:
    request = AWSRequest(method="POST", url=ECR_URL, headers=dict(ECR_HEADERS), data=ECR_BODY)
    botocore.auth.SigV4Auth(botocore_creds(token), "ecr", "us-east-1").add_auth(request)

    ours = sign_ecr(credentials=Credentials(AKID, SECRET, token))
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


@pytest.mark.usefixtures("frozen_botocore_clock")
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/",
        "https://API.ECR.us-east-1.amazonaws.com:443/",
        "http://[::1]:8080/some/../path//x/",
        "https://example.com/a%20b/c~d/%E1%88%B4?b=2&a=1&a=0&c=x%2Fy&d",
    ],
)
def test_sign_request_matches_botocore_for_hosts_paths_queries(url: str) -> None:
    request = AWSRequest(method="POST", url=url, headers=dict(ECR_HEADERS), data=ECR_BODY)
    botocore.auth.SigV4Auth(botocore_creds(), "ecr", "us-east-1").add_auth(request)
    assert sign_ecr(url=url)["Authorization"] == request.headers["Authorization"]


@pytest.mark.usefixtures("frozen_botocore_clock")
@pytest.mark.parametrize("token", [None, "session-token"])
def test_botocore_signed_request_verifies(token: str | None) -> None:
    request = AWSRequest(method="POST", url=ECR_URL, headers=dict(ECR_HEADERS), data=ECR_BODY)
    botocore.auth.SigV4Auth(botocore_creds(token), "ecr", "us-east-1").add_auth(request)
    verified = verify(with_host(dict(request.headers.items())))
    assert verified.access_key_id == AKID
    assert (verified.region, verified.service) == ("us-east-1", "ecr")
    assert verified.session_token == token
    assert not verified.presigned


@pytest.mark.usefixtures("frozen_botocore_clock")
def test_botocore_signed_request_with_date_header_verifies() -> None:
    # With a Date header botocore signs it instead of adding X-Amz-Date.
    headers = {**ECR_HEADERS, "Date": "Sun, 30 Aug 2015 12:36:00 GMT"}
    request = AWSRequest(method="POST", url=ECR_URL, headers=headers, data=ECR_BODY)
    botocore.auth.SigV4Auth(botocore_creds(), "ecr", "us-east-1").add_auth(request)
    assert "X-Amz-Date" not in request.headers
    verified = verify(with_host(dict(request.headers.items())))
    assert verified.signed_at == SUITE_TIME


def _capture_boto3_request(token: str | None) -> tuple[str, dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    class Captured(Exception):
        pass

    def before_send(request: Any, **_: Any) -> None:
        captured["request"] = request
        raise Captured

    client = boto3.client(
        "ecr",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:59999",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
    )
    client.meta.events.register("before-send", before_send)
    with pytest.raises(Captured):
        client.create_repository(
            repositoryName="project-a/nginx", tags=[{"Key": "k", "Value": "v"}]
        )
    request = captured["request"]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return request.url, headers, request.body


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEXAMPLE//token=="])
def test_real_boto3_client_request_verifies(token: str | None) -> None:
    url, headers, body = _capture_boto3_request(token)
    netloc, path, query = split_url(url)
    now = datetime.now(UTC)
    verified = verify({"Host": netloc, **headers}, body=body, path=path, query=query, now=now)
    assert (verified.access_key_id, verified.service, verified.session_token) == (
        AKID,
        "ecr",
        token,
    )
    assert "SignedHeaders=content-type;host;x-amz-date;" in headers["Authorization"]
    # Headers boto3 adds after signing (amz-sdk-*, User-Agent) are not covered ...
    unsigned_changed = {"Host": netloc, **headers, "amz-sdk-request": "attempt=2"}
    verify(unsigned_changed, body=body, now=now)
    # ... the operation is.
    tampered = {"Host": netloc, **headers, "X-Amz-Target": "X.DeleteRepository"}
    with pytest.raises(InvalidSignatureError):
        verify(tampered, body=body, now=now)
    with pytest.raises(InvalidSignatureError):
        verify({"Host": netloc, **headers}, body=body + b" ", now=now)


@pytest.mark.usefixtures("frozen_botocore_clock")
@pytest.mark.parametrize("token", [None, "session/token+="])
@pytest.mark.parametrize(
    "url",
    [
        "https://api.ecr.us-east-1.amazonaws.com/",
        "http://127.0.0.1:5000/v2/project-a/nginx/blobs/sha256:abc?foo=bar%20baz&a=1",
    ],
)
def test_botocore_presigned_url_verifies(token: str | None, url: str) -> None:
    request = AWSRequest(method="GET", url=url, headers={})
    botocore.auth.SigV4QueryAuth(botocore_creds(token), "ecr", "us-east-1", expires=900).add_auth(
        request
    )
    netloc, path, query = split_url(request.url)
    verified = verify({"Host": netloc}, method="GET", path=path, query=query, body=b"")
    assert verified.presigned
    assert verified.session_token == token
    assert verify(
        {"Host": netloc},
        method="GET",
        path=path,
        query=query,
        body=b"",
        now=SUITE_TIME + timedelta(seconds=900),
    )
    with pytest.raises(InvalidSignatureError, match="Signature expired: 20150830T123600Z"):
        verify(
            {"Host": netloc},
            method="GET",
            path=path,
            query=query,
            body=b"",
            now=SUITE_TIME + timedelta(seconds=901),
        )


@pytest.mark.usefixtures("frozen_botocore_clock")
def test_presign_url_matches_botocore_s3_presigner() -> None:
    # S3's presigner also signs only host with UNSIGNED-PAYLOAD; for a path that needs no
    # normalisation the two must agree on the signature.
    url = "https://registry.example.com/v2/repo/blobs/0123?response-content-type=a%2Fb"
    request = AWSRequest(method="GET", url=url, headers={})
    botocore.auth.S3SigV4QueryAuth(botocore_creds("tok"), "ecr", "us-east-1", expires=600).add_auth(
        request
    )
    ours = presign_url(
        method="GET",
        url=url,
        credentials=Credentials(AKID, SECRET, "tok"),
        region="us-east-1",
        service="ecr",
        expires_in=600,
        now=SUITE_TIME,
    )
    theirs_q = dict(parse_qsl(urlsplit(request.url).query))
    ours_q = dict(parse_qsl(urlsplit(ours).query))
    assert ours_q == theirs_q


def test_presign_url_round_trip() -> None:
    url = presign_url(
        method="GET",
        url="http://localhost:5000/layers/abc?X-Amz-Signature=stale&keep=1",
        credentials=Credentials(AKID, SECRET, "tok"),
        region="eu-west-1",
        service="ecr",
        expires_in=60,
        now=SUITE_TIME,
    )
    netloc, path, query = split_url(url)
    params = parse_qsl(query)
    assert [k for k, _ in params].count("X-Amz-Signature") == 1
    assert ("keep", "1") in params
    assert ("X-Amz-SignedHeaders", "host") in params
    assert ("X-Amz-Security-Token", "tok") in params
    verified = verify({"host": netloc}, method="GET", path=path, query=query, body=b"")
    assert verified.region == "eu-west-1"
    assert verified.presigned
    # The query is canonicalised, so parameter order on the wire does not matter.
    shuffled = "&".join(reversed(query.split("&")))
    verify({"host": netloc}, method="GET", path=path, query=shuffled, body=b"")
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify({"host": netloc}, method="GET", path=path, query=query + "&extra=1", body=b"")
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify({"host": netloc}, method="PUT", path=path, query=query, body=b"")
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify({"host": "evil:5000"}, method="GET", path=path, query=query, body=b"")
    with pytest.raises(InvalidSignatureError, match="Signature expired"):
        verify(
            {"host": netloc},
            method="GET",
            path=path,
            query=query,
            body=b"",
            now=SUITE_TIME + timedelta(seconds=61),
        )


def test_presign_url_rejects_bad_expiry() -> None:
    for expires_in in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            presign_url(
                method="GET",
                url="http://h/",
                credentials=SUITE_CREDS,
                region="us-east-1",
                service="ecr",
                expires_in=expires_in,
                now=SUITE_TIME,
            )


# --- header handling ----------------------------------------------------------------------


def test_aiohttp_multidict_headers_and_repeated_values() -> None:
    signed = sign_ecr(headers={**ECR_HEADERS, "X-Amz-Meta-Tags": "a,  b"})
    wire: CIMultiDict[str] = CIMultiDict()
    wire.add("HOST", ECR_HOST)
    for name, value in signed.items():
        wire.add(name.upper(), value)
    assert verify(CIMultiDictProxy(wire)).access_key_id == AKID

    # Two occurrences of one header are signed as their comma-joined, trimmed values.
    wire2: CIMultiDict[str] = CIMultiDict(wire)
    del wire2["X-AMZ-META-TAGS"]
    wire2.add("x-amz-meta-tags", "  a,")
    wire2.add("x-amz-meta-tags", "b   ")
    with pytest.raises(InvalidSignatureError):
        verify(CIMultiDictProxy(wire2))
    creq = canonical_request(
        "POST", "/", "", {"X-Amz-Meta-Tags": ["  a,", "b   "]}, ["X-Amz-Meta-Tags"], "h"
    )
    assert "x-amz-meta-tags:a,,b\n" in creq


def test_header_values_are_trimmed_and_collapsed() -> None:
    signed = sign_ecr(headers={**ECR_HEADERS, "X-Amz-Meta-Note": "  one   two\tthree  "})
    wire = with_host(signed)
    wire["X-Amz-Meta-Note"] = "one two three"
    verify(wire)
    creq = canonical_request("GET", "/", "", {"X-A": "  a   b  "}, ["x-a"], "h")
    assert "x-a:a b\n" in creq


def test_sign_request_replaces_stale_auth_headers_and_signs_expected_set() -> None:
    stale = {
        **ECR_HEADERS,
        "authorization": "old",
        "x-amz-date": "19990101T000000Z",
        "User-Agent": "not-signed",
    }
    signed = sign_ecr(headers=stale)
    assert "authorization" not in signed and "x-amz-date" not in signed
    assert signed["User-Agent"] == "not-signed"
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-target," in signed["Authorization"]
    wire = with_host(signed)
    wire["User-Agent"] = "changed"  # unsigned headers may change
    verify(wire)


def test_explicit_host_header_is_signed_as_given() -> None:
    signed = sign_ecr(headers={**ECR_HEADERS, "Host": "proxy.internal:8443"})
    verify(signed)
    with pytest.raises(InvalidSignatureError):
        verify({**signed, "Host": ECR_HOST})


def test_content_sha256_header_must_match_body() -> None:
    headers = {**ECR_HEADERS, "X-Amz-Content-SHA256": EMPTY_PAYLOAD_SHA256}
    signed = with_host(sign_ecr(headers=headers, body=b""))
    assert verify(signed, body=b"")
    with pytest.raises(InvalidSignatureError, match="x-amz-content-sha256"):
        verify(signed, body=b"{}")
    unsigned = with_host(
        sign_ecr(headers={**ECR_HEADERS, "X-Amz-Content-SHA256": UNSIGNED_PAYLOAD})
    )
    with pytest.raises(InvalidSignatureError, match="x-amz-content-sha256"):
        verify(unsigned)


# --- tampering ----------------------------------------------------------------------------


def test_tampered_body_header_query_path_method() -> None:
    signed = with_host(sign_ecr())
    verify(signed)
    with pytest.raises(InvalidSignatureError, match="The request signature we calculated"):
        verify(signed, body=ECR_BODY.replace(b"10", b"11"))
    for name, value in [
        ("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.DeleteRepository"),
        ("Content-Type", "application/json"),
        ("Host", "other.example.com"),
    ]:
        with pytest.raises(InvalidSignatureError):
            verify({**signed, name: value})
    with pytest.raises(InvalidSignatureError):
        verify(signed, query="a=1")
    with pytest.raises(InvalidSignatureError):
        verify(signed, path="/x")
    with pytest.raises(InvalidSignatureError):
        verify(signed, method="PUT")
    bad_sig = signed["Authorization"][:-1] + ("0" if signed["Authorization"][-1] != "0" else "1")
    with pytest.raises(InvalidSignatureError):
        verify({**signed, "Authorization": bad_sig})
    with pytest.raises(InvalidSignatureError):
        verify({**signed, "Authorization": signed["Authorization"] + "ü"})


def test_signature_with_other_secret_is_rejected() -> None:
    signed = with_host(sign_ecr(credentials=Credentials(AKID, "not-the-secret")))
    with pytest.raises(InvalidSignatureError, match="Check your AWS Secret Access Key"):
        verify(signed)


def test_query_string_is_signed_canonically() -> None:
    url = "https://api.ecr.us-east-1.amazonaws.com/?b=2&a=%7E&a=1&c=x%2fy&flag"
    signed = with_host(sign_ecr(url=url))
    verify(signed, query="b=2&a=%7E&a=1&c=x%2fy&flag")
    # Equivalent encodings and order verify too.
    verify(signed, query="flag=&c=x%2Fy&a=1&a=~&b=2")
    with pytest.raises(InvalidSignatureError):
        verify(signed, query="b=2&a=~&a=1&c=x/y&flag=1")


# --- canonical URI and query --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/./", "/"),
        ("/./example", "/example"),
        ("//example//", "/example/"),
        ("/example/..", "/"),
        ("/example1/example2/../..", "/"),
        ("/a/b/../c/./d", "/a/c/d"),
        ("/../../a", "/a"),
        ("/a/b/", "/a/b/"),
        ("/-._~0-9A-Za-z", "/-._~0-9A-Za-z"),
        ("/example space/", "/example%20space/"),
        ("/\u1234", "/%E1%88%B4"),
        # The wire path is already encoded; the canonical URI encodes it once more.
        ("/example%20space/", "/example%2520space/"),
        ("/%E1%88%B4", "/%25E1%2588%25B4"),
        ("/v2/repo/blobs/sha256:abc", "/v2/repo/blobs/sha256%3Aabc"),
        ("/a+b=c@d!", "/a%2Bb%3Dc%40d%21"),
    ],
)
def test_canonical_uri(raw: str, expected: str) -> None:
    assert canonical_uri(raw) == expected
    # botocore's non-S3 signer agrees.
    signer = botocore.auth.SigV4Auth(botocore_creds(), "service", "us-east-1")
    assert signer._normalize_url_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("Param2=value2&Param1=value1", "Param1=value1&Param2=value2"),
        ("Param1=value2&Param1=Value1", "Param1=Value1&Param1=value2"),
        ("b=1&B=2&a=3", "B=2&a=3&b=1"),
        ("a=%7e&b=%2f&c=~&d=a b", "a=~&b=%2F&c=~&d=a%20b"),
        ("a=1+2", "a=1%2B2"),
        ("flag&x=", "flag=&x="),
        ("&&a=1&", "a=1"),
        ("k=%E1%88%B4", "k=%E1%88%B4"),
    ],
)
def test_canonical_query_string(raw: str, expected: str) -> None:
    assert canonical_query_string(raw) == expected


# --- error cases --------------------------------------------------------------------------


def test_missing_authentication_token() -> None:
    with pytest.raises(MissingAuthenticationTokenError) as info:
        verify(with_host(ECR_HEADERS))
    assert info.value.message == "Missing Authentication Token"
    with pytest.raises(MissingAuthenticationTokenError):
        verify(with_host(ECR_HEADERS), query="X-Amz-Signaturefoo=1")


def test_authorization_not_sigv4() -> None:
    with pytest.raises(IncompleteSignatureError) as info:
        verify({"Host": ECR_HOST, "Authorization": "Bearer abc.def"})
    assert info.value.message == (
        "Authorization header requires 'Credential' parameter. "
        "Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. "
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        "Authorization=Bearer abc.def"
    )


@pytest.mark.parametrize("missing", ["Credential", "SignedHeaders", "Signature"])
def test_authorization_missing_parameter(missing: str) -> None:
    signed = with_host(sign_ecr())
    parts = signed["Authorization"].removeprefix("AWS4-HMAC-SHA256 ").split(", ")
    kept = [p for p in parts if not p.startswith(missing + "=")]
    authorization = "AWS4-HMAC-SHA256 " + ", ".join(kept)
    with pytest.raises(IncompleteSignatureError) as info:
        verify({**signed, "Authorization": authorization})
    assert info.value.message == (
        f"Authorization header requires '{missing}' parameter. Authorization={authorization}"
    )


def test_authorization_without_any_date() -> None:
    signed = with_host(sign_ecr())
    del signed["X-Amz-Date"]
    with pytest.raises(IncompleteSignatureError) as info:
        verify(signed)
    assert info.value.message == (
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        f"Authorization={signed['Authorization']}"
    )


def test_authorization_malformed_pair_and_algorithm() -> None:
    signed = with_host(sign_ecr())
    with pytest.raises(IncompleteSignatureError, match="missing equal-sign"):
        verify({**signed, "Authorization": signed["Authorization"] + ", junk"})
    other = signed["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    with pytest.raises(IncompleteSignatureError, match="Unsupported AWS 'algorithm'"):
        verify({**signed, "Authorization": other})


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        (
            f"{AKID}/20150830/us-east-1/ecr",
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{AKID}/20150830/us-east-1/ecr'",
        ),
        (
            f"{AKID}/20150830/us-east-1/ecr/aws4_reqest",
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            "not 'aws4_reqest'.",
        ),
        (f"{AKID}/20150830//ecr/aws4_request", "Credential should be scoped to a valid region"),
    ],
)
def test_malformed_credential_scope(credential: str, message: str) -> None:
    signed = with_host(sign_ecr())
    authorization = signed["Authorization"].replace(
        f"Credential={AKID}/20150830/us-east-1/ecr/aws4_request", f"Credential={credential}"
    )
    with pytest.raises(IncompleteSignatureError) as info:
        verify({**signed, "Authorization": authorization})
    assert info.value.message.startswith(message)


def test_host_must_be_signed() -> None:
    signed = with_host(sign_ecr())
    authorization = signed["Authorization"].replace("content-type;host;", "content-type;")
    with pytest.raises(IncompleteSignatureError, match="'Host' or ':authority' must be"):
        verify({**signed, "Authorization": authorization})


def test_bad_amz_date_format() -> None:
    signed = with_host(sign_ecr())
    with pytest.raises(IncompleteSignatureError, match="ISO-8601 'basic format'"):
        verify({**signed, "X-Amz-Date": "2015-08-30T12:36:00Z"})


def test_scope_date_must_match_request_date() -> None:
    signed = with_host(sign_ecr())
    authorization = signed["Authorization"].replace("/20150830/", "/20150829/")
    with pytest.raises(InvalidSignatureError) as info:
        verify({**signed, "Authorization": authorization})
    assert info.value.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '20150829' != '20150830', from 'x-amz-date'."
    )


def test_expected_region_and_service() -> None:
    signed = with_host(sign_ecr())
    verify(signed, expected_region="us-east-1", expected_service="ecr")
    with pytest.raises(InvalidSignatureError, match="valid region, not 'us-east-1'"):
        verify(signed, expected_region="eu-west-1")
    with pytest.raises(InvalidSignatureError, match="correct service: 'ecr'"):
        verify(with_host(sign_ecr(service="s3")), expected_service="ecr")


def test_unknown_access_key() -> None:
    signed = with_host(sign_ecr(credentials=Credentials("AKIAUNKNOWN", SECRET)))
    with pytest.raises(UnrecognizedClientError) as info:
        verify(signed)
    assert info.value.message == "The security token included in the request is invalid."


def test_signature_expired_and_not_yet_current() -> None:
    signed = with_host(sign_ecr())
    late = datetime(2015, 8, 30, 12, 56, tzinfo=UTC)
    with pytest.raises(InvalidSignatureError) as info:
        verify(signed, now=late)
    assert info.value.message == (
        "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z "
        "(20150830T125600Z - 15 min.)"
    )
    early = datetime(2015, 8, 30, 12, 16, tzinfo=UTC)
    with pytest.raises(InvalidSignatureError) as info:
        verify(signed, now=early)
    assert info.value.message == (
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123100Z "
        "(20150830T121600Z + 15 min.)"
    )
    # The bounds themselves are inside the window.
    verify(signed, now=SUITE_TIME + timedelta(minutes=15))
    verify(signed, now=SUITE_TIME - timedelta(minutes=15))
    with pytest.raises(InvalidSignatureError, match=r"\(20150830T123800Z - 90 sec.\)$"):
        verify(signed, now=SUITE_TIME + timedelta(seconds=120), max_skew=timedelta(seconds=90))


def _presigned_query(**overrides: str | None) -> tuple[str, str]:
    url = presign_url(
        method="GET",
        url="http://127.0.0.1:5000/dl",
        credentials=SUITE_CREDS,
        region="us-east-1",
        service="ecr",
        expires_in=300,
        now=SUITE_TIME,
    )
    netloc, _, query = split_url(url)
    params = dict(parse_qsl(query))
    for name, value in overrides.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return netloc, "&".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize(
    "missing", ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Date"]
)
def test_presigned_missing_parameter(missing: str) -> None:
    netloc, query = _presigned_query(**{missing: None})
    with pytest.raises(IncompleteSignatureError) as info:
        verify({"host": netloc}, method="GET", path="/dl", query=query, body=b"")
    assert info.value.message == (
        f"AWS query-string parameters must include '{missing}'. "
        "Re-examine the query-string parameters."
    )


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"X-Amz-Expires": "soon"}, IncompleteSignatureError, "X-Amz-Expires should be a number"),
        ({"X-Amz-Expires": "604801"}, IncompleteSignatureError, "less than a week"),
        ({"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}, IncompleteSignatureError, "only supports"),
        ({"X-Amz-SignedHeaders": "x-amz-date"}, IncompleteSignatureError, "'Host' or"),
        ({"X-Amz-Date": "20150830"}, IncompleteSignatureError, "basic format"),
        ({"X-Amz-Date": "20150831T000000Z"}, InvalidSignatureError, "Date in Credential scope"),
        (
            {"X-Amz-Credential": f"{AKID}/20150830/us-east-1/ecr/aws5_request"},
            IncompleteSignatureError,
            "valid terminator",
        ),
        (
            {"X-Amz-Credential": "AKIAOTHER/20150830/us-east-1/ecr/aws4_request"},
            UnrecognizedClientError,
            "security token included in the request is invalid",
        ),
        ({"X-Amz-Expires": "301"}, InvalidSignatureError, "does not match"),
        ({"X-Amz-Signature": "0" * 64}, InvalidSignatureError, "does not match"),
    ],
)
def test_presigned_errors(overrides: dict[str, str], error: type[Exception], message: str) -> None:
    netloc, query = _presigned_query(**overrides)
    with pytest.raises(error, match=message):
        verify({"host": netloc}, method="GET", path="/dl", query=query, body=b"")


def test_presigned_future_and_body() -> None:
    netloc, query = _presigned_query()
    with pytest.raises(InvalidSignatureError, match="Signature not yet current"):
        verify(
            {"host": netloc},
            method="GET",
            path="/dl",
            query=query,
            body=b"",
            now=SUITE_TIME - timedelta(minutes=16),
        )
    # UNSIGNED-PAYLOAD: the URL does not cover a body.
    verify({"host": netloc}, method="GET", path="/dl", query=query, body=b"anything")


def test_presigned_without_expires_uses_skew_window() -> None:
    netloc, query = _presigned_query(**{"X-Amz-Expires": None})
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify({"host": netloc}, method="GET", path="/dl", query=query, body=b"")


def test_header_form_takes_precedence_over_query() -> None:
    signed = with_host(sign_ecr())
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify(signed, query="X-Amz-Signature=abc")


# --- read_unverified_scope ----------------------------------------------------------------


def test_read_unverified_scope() -> None:
    signed = sign_ecr(credentials=Credentials("AKIAANY", "whatever"))
    assert read_unverified_scope({"authorization": signed["Authorization"]}, "") == (
        "AKIAANY",
        "20150830",
        "us-east-1",
        "ecr",
    )
    _, query = _presigned_query()
    assert read_unverified_scope({}, query) == (AKID, "20150830", "us-east-1", "ecr")
    assert read_unverified_scope({}, "") is None
    assert read_unverified_scope({"Authorization": "Basic abc"}, "") is None
    bad = "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1, Signature=x"
    assert read_unverified_scope({"Authorization": bad}, "") is None


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("AKIAPUBLIC", "super-secret", "session-secret"))
    assert "AKIAPUBLIC" in text
    assert "super-secret" not in text and "session-secret" not in text


# --- property: whatever is signed verifies, and the body is covered ----------------------

_header_names = st.from_regex(r"x-amz-meta-[a-z0-9]{1,12}", fullmatch=True) | st.just(
    "content-type"
)
_header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(
    headers=st.dictionaries(_header_names, _header_values, max_size=6),
    body=st.binary(min_size=1, max_size=512),
    flip=st.data(),
)
def test_property_signed_requests_verify_and_body_changes_fail(
    headers: dict[str, str], body: bytes, flip: st.DataObject
) -> None:
    signed = with_host(sign_ecr(headers=headers, body=body))
    assert verify(signed, body=body).access_key_id == AKID

    index = flip.draw(st.integers(min_value=0, max_value=len(body) - 1))
    delta = flip.draw(st.integers(min_value=1, max_value=255))
    changed = bytearray(body)
    changed[index] = (changed[index] + delta) % 256
    with pytest.raises(InvalidSignatureError):
        verify(signed, body=bytes(changed))


def test_json_body_round_trip_with_unicode() -> None:
    body = json.dumps({"repositoryName": "café/ሴ"}, ensure_ascii=False).encode()
    signed = with_host(sign_ecr(body=body, headers={**ECR_HEADERS, "X-Amz-Meta-Name": "café"}))
    verify(signed, body=body)
