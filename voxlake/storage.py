"""Filesystems behind voxlake's paths: S3 options, s3fs construction, ``s3://`` URLs, S3 errors.

Every place that takes a path (manifest, media sources, output root) also takes an ``s3://``
URL; this module is the one place that turns such a URL into an s3fs filesystem and an
fsspec path, and the one place that turns s3fs/botocore exceptions into voxlake errors.

Credentials are never a parameter here. By default s3fs/botocore find them through the standard
AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``
and the shared config/credentials files, SSO, container and instance roles), so they never become
flow parameters, log lines or table cells. :class:`S3Options` holds only what is not secret: where
the store is (``endpoint_url``, ``region``), which profile to use, and how to hand objects to
the transcription service (``presign``). ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` and
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` are honoured by botocore itself when the options leave
them unset. The one other source is :func:`use_s3_credentials`: explicit credentials (from a
prefect-aws ``AwsCredentials`` block, :mod:`voxlake.credentials`) held in a context variable for
the code inside it, so they are never a flow parameter nor written to ``os.environ``. See
docs/s3.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from voxlake.errors import VoxlakeError
from voxlake.settings import settings

__all__ = [
    "S3_SCHEME",
    "S3AccessDeniedError",
    "S3BucketNotFoundError",
    "S3Credentials",
    "S3NotFoundError",
    "S3Options",
    "S3ThrottledError",
    "StorageError",
    "is_s3_url",
    "join_s3",
    "s3_filesystem",
    "s3_options_from_flags",
    "s3_path",
    "s3_url",
    "split_s3",
    "storage_error",
    "use_s3_credentials",
]

S3_SCHEME = "s3://"

#: Seven days: the longest a SigV4 presigned URL can live.
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600


class S3Options(BaseModel):
    """Non-secret S3 settings of a run (flow parameter ``s3``; CLI ``--s3-*`` / ``--presign``).

    Leave a field unset to let botocore decide (environment, profile, defaults). There is on
    purpose no field for keys or tokens: ``extra="forbid"`` rejects them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, R2, Ceph, moto), e.g. http://127.0.0.1:9000; "
        "default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS",
    )
    region: str | None = Field(default=None, description="e.g. eu-west-1; default: botocore's")
    profile: str | None = Field(default=None, description="profile in ~/.aws/config")
    presign: bool = Field(
        default=False,
        description="submit presigned GET URLs as audio_url instead of uploading the bytes",
    )
    presign_expires_s: int = Field(
        default=24 * 3600,
        ge=60,
        le=MAX_PRESIGN_EXPIRES_S,
        description="lifetime of presigned URLs; must outlive the job's time in the queue",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="botocore attempts per S3 request (throttling, 5xx, network)",
    )

    @field_validator("endpoint_url")
    @classmethod
    def _plain_http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("endpoint_url must be an http(s) URL such as http://127.0.0.1:9000")
        if parts.username or parts.password or parts.query:
            # Credentials belong in the AWS credential chain, never in a parameter.
            raise ValueError(
                "endpoint_url must not carry credentials or a query string; use the AWS "
                "credential chain (environment, profile, role)"
            )
        return value.strip().rstrip("/")


# The CLI's name for each S3Options field, so a message names what the user typed.
_S3_FLAGS = {
    "endpoint_url": "--s3-endpoint-url",
    "region": "--s3-region",
    "profile": "--s3-profile",
    "presign": "--presign",
    "presign_expires_s": "--presign-expires",
}


def s3_options_from_flags(fields: Mapping[str, object]) -> S3Options | None:
    """:class:`S3Options` from the CLI's ``--s3-*`` values (None when none was given).

    Raises ``ValueError`` worded with the flags' names (``--s3-endpoint-url: ...``).
    """
    if not fields:
        return None
    try:
        return S3Options.model_validate(dict(fields))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{_S3_FLAGS.get(field, field or 'S3 options')}: {error['msg']}")
        raise ValueError("; ".join(problems)) from None


class S3Credentials(BaseModel):
    """Explicit S3 credentials for :func:`use_s3_credentials`; secrets stay ``SecretStr``.

    Never a flow parameter: it is built inside the flow run from a block
    (:func:`voxlake.credentials.aws_s3_credentials`). Location fields apply only where
    :class:`S3Options` leaves them unset.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    key: SecretStr | None = None
    secret: SecretStr | None = None
    token: SecretStr | None = None
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None


_s3_credentials: ContextVar[S3Credentials | None] = ContextVar(
    "voxlake_s3_credentials", default=None
)


@contextmanager
def use_s3_credentials(credentials: S3Credentials | None) -> Iterator[None]:
    """Build every s3fs filesystem inside the block with ``credentials`` (None: the AWS chain).

    A context variable, so Prefect task runs started inside inherit it (Prefect copies the
    context into its task threads) while other flow runs in the same process do not.
    """
    token = _s3_credentials.set(credentials)
    try:
        yield
    finally:
        _s3_credentials.reset(token)


# --- URLs -------------------------------------------------------------------------------------


def is_s3_url(text: object) -> bool:
    return isinstance(text, str) and text[:5].lower() == S3_SCHEME


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``.

    Keys are taken literally, as the AWS CLI does: no percent-decoding, and ``?``, ``#``, ``+``
    and spaces are part of the key.
    """
    if not is_s3_url(url):
        raise ValueError(f"not an s3:// URL: {url!r}")
    rest = url[len(S3_SCHEME) :]
    bucket, _, key = rest.partition("/")
    return bucket, key


def s3_url(bucket: str, key: str = "") -> str:
    return f"{S3_SCHEME}{bucket}/{key}"


def s3_path(url: str) -> str:
    """The fsspec path of an ``s3://`` URL (``bucket/key``), without a trailing slash."""
    bucket, key = split_s3(url)
    return f"{bucket}/{key}".rstrip("/")


def join_s3(base: str, relative: str) -> str | None:
    """Resolve ``relative`` against the S3 folder URL ``base`` (which ends with ``/``).

    A leading ``/`` means the bucket root. ``.`` and ``..`` are resolved lexically; ``None``
    when ``..`` climbs above the bucket.
    """
    bucket, prefix = split_s3(base)
    joined = relative.lstrip("/") if relative.startswith("/") else prefix + relative
    parts: list[str] = []
    for part in joined.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    key = "/".join(parts)
    return s3_url(bucket, key + "/" if joined.endswith("/") and key else key)


# --- filesystems ------------------------------------------------------------------------------


def _quiet_wire_logging() -> None:
    """Keep botocore's DEBUG wire log off: it prints signed headers (access key id, session
    token) and canonical requests. ``VOXLAKE_S3_DEBUG_LOGGING=1`` allows it for a debugging
    session, knowing that credentials then reach the logs."""
    if settings().s3_debug_logging:
        return
    for name in ("botocore", "aiobotocore"):
        lib_logger = logging.getLogger(name)
        if lib_logger.getEffectiveLevel() < logging.INFO:
            lib_logger.setLevel(logging.INFO)


def s3_filesystem(options: S3Options | None = None) -> Any:
    """An s3fs filesystem for ``options`` (credentials: :func:`use_s3_credentials`, else the
    standard AWS chain).

    Listing caches are off: a run lists once and must see objects written by other processes.
    Retries: botocore's ``standard`` mode (throttling such as ``SlowDown`` and 503, 5xx and
    network errors, exponential backoff with jitter) for ``max_attempts``; s3fs adds at most one
    more round around it.
    """
    import s3fs  # imported lazily: local-only runs never load botocore

    _quiet_wire_logging()
    options = options or S3Options()
    kwargs: dict[str, Any] = {
        "use_listings_cache": False,
        "config_kwargs": {
            "signature_version": "s3v4",
            "retries": {"max_attempts": options.max_attempts, "mode": "standard"},
        },
    }
    credentials = _s3_credentials.get() or S3Credentials()
    endpoint_url = options.endpoint_url or credentials.endpoint_url
    region = options.region or credentials.region
    profile = options.profile or credentials.profile
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["client_kwargs"] = {"region_name": region}
    if profile:
        kwargs["profile"] = profile
    # Unwrapped only here, straight into botocore's session.
    for name in ("key", "secret", "token"):
        secret = getattr(credentials, name)
        if secret is not None:
            kwargs[name] = secret.get_secret_value()
    fs = s3fs.S3FileSystem(**kwargs)
    fs.retries = 2  # s3fs's own loop around botocore's (a class attribute, 5 by default)
    return fs


# --- errors -----------------------------------------------------------------------------------


class StorageError(VoxlakeError):
    """An object store request failed after botocore's retries. ``url`` names the object."""

    def __init__(self, message: str, *, url: str | None = None, transient: bool | None = None):
        super().__init__(message, transient=transient)
        self.url = url


class S3NotFoundError(StorageError):
    """No such key (terminal)."""


class S3BucketNotFoundError(StorageError):
    """No such bucket (terminal)."""


class S3AccessDeniedError(StorageError):
    """Access denied, expired or invalid credentials (terminal)."""


class S3ThrottledError(StorageError):
    """``SlowDown`` / 503 still returned after the retries (transient: try again later)."""

    transient = True


_THROTTLE_MARKERS = (
    "SlowDown",
    "reduce your request rate",
    "ServiceUnavailable",
    "Service Unavailable",
    "503",
    "RequestLimitExceeded",
    "Throttling",
    "TooManyRequests",
)


def _client_error_code(exc: BaseException) -> str | None:
    """The S3 error code (``NoSuchKey``, ``AccessDenied``, ``503`` ...) behind an s3fs error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        current = current.__cause__ or current.__context__
    return None


def storage_error(exc: BaseException, url: str, action: str = "reading") -> StorageError:
    """Translate an s3fs/botocore exception about ``url`` into a voxlake error with a fix.

    Missing key, missing bucket and access denied are terminal; throttling and other I/O
    failures are transient.
    """
    if isinstance(exc, StorageError):
        return exc
    code = _client_error_code(exc) or ""
    text = f"{code} {exc}"
    bucket = s3_url(split_s3(url)[0]) if is_s3_url(url) else url
    if code == "NoSuchBucket" or "bucket does not exist" in text:
        return S3BucketNotFoundError(
            f"{action} {url}: bucket {bucket} does not exist — check the bucket name, the "
            "region and the endpoint (--s3-endpoint-url / AWS_ENDPOINT_URL_S3)",
            url=url,
        )
    if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "404", "NotFound"):
        return S3NotFoundError(
            f"{action} {url}: no such object — check the key (keys are case-sensitive; spaces "
            "and '+' are literal) and that it was not moved or deleted",
            url=url,
        )
    if isinstance(exc, PermissionError) or code in ("AccessDenied", "403", "Forbidden"):
        return S3AccessDeniedError(
            f"{action} {url}: access denied — check that the credentials found by the AWS chain "
            "(AWS_* environment variables, AWS_PROFILE / --s3-profile, instance or task role) "
            f"allow s3:GetObject on it (s3:ListBucket on {bucket} for listings, s3:PutObject "
            "for output), and that the bucket policy and KMS key permit it",
            url=url,
        )
    if any(marker in text for marker in _THROTTLE_MARKERS):
        return S3ThrottledError(
            f"{action} {url}: S3 is throttling requests (SlowDown / 503) after retries — lower "
            "--max-uploads or spread keys over more prefixes, then run again",
            url=url,
        )
    detail = code or type(exc).__name__
    return StorageError(
        f"{action} {url} failed ({detail}: {exc}) — check the endpoint and network, then run again",
        url=url,
        transient=True,
    )
