"""The one voxlake error hierarchy.

Every exception voxlake raises to a user derives from :class:`VoxlakeError` (a test walks the
package to hold that, and that each class is drawn below). Every error is either *transient*
(waiting and trying again may succeed) or *terminal* (it will fail the same way until someone
changes something). ``attempts`` says how many times the client already tried (set by
:class:`voxlake.retry.RetryPolicy`), so outer layers (Prefect task retries) never re-retry what
the client already retried. How an error ends a command (exit status, one line on stderr) is
decided in one place: :func:`voxlake.cli.common.exit_status`.

The client's errors, defined here::

    VoxlakeError                      transient?  attempts
    ├── ConfigurationError            terminal    missing API key, bad base URL
    ├── MediaError                    terminal    local pre-checks, before any request
    │   ├── EmptyMediaError                       0-byte file
    │   ├── MediaTooLargeError                    > 2.2 GB upload limit
    │   ├── NotMediaError                         HTML / JSON / text / PDF / ZIP / ELF ...
    │   └── MediaReadError            transient   reading the source failed mid-upload
    ├── APIError(status_code, message, transcript_id)   an HTTP error response
    │   ├── BadRequestError           terminal    400
    │   ├── AuthenticationError       terminal    401 (never retried)
    │   ├── ForbiddenError            terminal    403
    │   │   └── UploadAccessError     terminal    403 "Cannot access uploaded file"
    │   ├── NotFoundError             terminal    404
    │   ├── RateLimitError            transient   429 (retry_after from Retry-After)
    │   ├── ServerError               transient   500 / 502 / 503 / 504 (any 5xx)
    │   ├── InvalidResponseError      terminal    2xx body that is not the documented JSON
    │   └── RedactedAudioNotReadyError transient  202 from /redacted-audio: ask again later
    ├── NetworkError                  transient   connect / read / write / protocol errors
    │   └── RequestTimeoutError       transient   httpx timeouts (also a ``TimeoutError``)
    ├── TranscriptFailedError         terminal    a transcript with status=error
    └── PollTimeoutError              transient   we stopped waiting; the job still runs

The rest of the tree, defined beside the code that raises it (module in brackets); a second
base class keeps an ``except`` of the standard exception working::

    VoxlakeError
    ├── StorageError                          an object store request failed    [storage]
    │   ├── S3NotFoundError                   no such key
    │   ├── S3BucketNotFoundError             no such bucket
    │   ├── S3AccessDeniedError               denied, expired or invalid credentials
    │   └── S3ThrottledError      transient   SlowDown / 503 after botocore's retries
    ├── ManifestError (+ValueError)           rows of a manifest are unusable   [manifest.items]
    ├── NotAFileError (+OSError)              a source path names a folder      [manifest.resolve]
    ├── InputError                            an option value a run cannot use  [inputs]
    ├── SettingsError (ConfigurationError, +ValueError)  a bad VOXLAKE_* value  [settings]
    ├── LeaseHeldError                        another run holds the output root [ledger]
    ├── LeaseLostError                        this run's lease was taken over   [ledger]
    ├── JobGoneError                          a ledger's job no longer exists   [run.failures]
    ├── SubmitOutcomeUnknownError             a create may have made the job    [run.failures]
    ├── RunStoppedError                       an item the run did not finish    [run.failures]
    ├── SharedBudgetUnavailable               shared request budget unusable    [ratelimit]
    ├── ServeError                            voxlake serve cannot go on        [errors]
    ├── NotAnOutputRootError                  no tables or ledger at the path   [views]
    ├── QueryError                            DuckDB rejected a statement       [query]
    ├── ReportError                           the report cannot be made         [analytics_report]
    └── TableInvariantError (+AssertionError) tables break an invariant     [checks]

Outside the tree, on purpose: :class:`voxlake.runner.RunInterrupted` is a ``KeyboardInterrupt``
(Ctrl-C, not an error; no ``except Exception`` may swallow it). The local server's exceptions
(``voxlake.emulator``: ParamError, EngineError, InjectedReset, ApiError, NotAudioError,
StateDirInUseError) are the server's internals: it shares no code with the client, and the
edges that start it translate what a user can meet (a state directory in use becomes a
:class:`ConfigurationError` in ``voxlake run`` and ``voxlake serve-local``).

httpx exceptions are translated once, at the client boundary (``raise X from exc``). Messages
name the transcript id where known and say what to do. Messages never contain request headers,
so the API key can never appear in ``str``/``repr``/tracebacks of these errors.
"""

from __future__ import annotations

from typing import ClassVar


class VoxlakeError(Exception):
    """Root of every voxlake error.

    ``transient`` is a class default that instances may override (e.g. a network error during a
    non-replayable upload). ``attempts`` is the number of tries the client made (1 = no retry).
    """

    transient: bool = False  # class default; an instance may override it
    hint: ClassVar[str] = ""

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = 1
        if transient is not None:
            # Shadow the class default on this instance only.
            self.transient = transient

    def __str__(self) -> str:
        text = self.message
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, transient={self.transient})"


class ConfigurationError(VoxlakeError):
    """The client cannot be built as configured (missing API key, invalid base URL)."""


# --- local media pre-checks -------------------------------------------------------------------


class MediaError(VoxlakeError):
    """A local file failed a pre-check; nothing was sent to AssemblyAI."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class EmptyMediaError(MediaError):
    """The file has 0 bytes."""


class MediaTooLargeError(MediaError):
    """The file exceeds the 2.2 GB upload limit."""


class NotMediaError(MediaError):
    """The first bytes show the file is not audio or video (HTML, JSON, text, PDF, ZIP...)."""


class MediaReadError(MediaError):
    """Reading the source failed during an upload (disk error, remote file system hiccup)."""

    transient = True


# --- HTTP error responses ---------------------------------------------------------------------


class APIError(VoxlakeError):
    """AssemblyAI answered with an error status. ``message`` is its ``error`` text."""

    hint: ClassVar[str] = ""

    def __init__(
        self,
        status_code: int,
        message: str,
        transcript_id: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        transient: bool | None = None,
        hint: str | None = None,
    ) -> None:
        # ``hint`` replaces the class's advice where the caller knows better what to do.
        self._hint = type(self).hint if hint is None else hint
        self.status_code = status_code
        self.api_message = message
        self.transcript_id = transcript_id
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(self._compose(), transient=transient)

    def _compose(self) -> str:
        where = f"{self.method} {self.path} " if self.method and self.path else ""
        text = f"{where}-> HTTP {self.status_code}: {self.api_message}"
        if self.transcript_id:
            text += f" [transcript {self.transcript_id}]"
        if self._hint:
            text += f". {self._hint}"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, message={self.api_message!r}, "
            f"transcript_id={self.transcript_id!r}, transient={self.transient})"
        )


class BadRequestError(APIError):
    hint = "The request was rejected as invalid; fix the parameters, retrying will not help"


class AuthenticationError(APIError):
    hint = (
        "Check the API key (argument or ASSEMBLYAI_API_KEY) and that it belongs to the region "
        "of the base URL"
    )


class ForbiddenError(APIError):
    hint = "The key is not allowed to access this resource"


class UploadAccessError(ForbiddenError):
    hint = (
        "The upload_url was uploaded with a key from another project, or it expired (24 h); "
        "upload the file again with the same key you transcribe with"
    )


class NotFoundError(APIError):
    hint = "The transcript does not exist for this key (wrong id, wrong project, or deleted)"


class RateLimitError(APIError):
    transient = True
    hint = "Rate limited (20,000 requests / 5 min per account); slow down and retry"


class ServerError(APIError):
    transient = True
    hint = "AssemblyAI server-side error; retrying later usually succeeds"


class InvalidResponseError(APIError):
    hint = "The response did not match the AssemblyAI v2 contract"


class RedactedAudioNotReadyError(APIError):
    transient = True
    hint = "The redacted audio is still being generated; ask again in a few seconds"


# --- transport errors -------------------------------------------------------------------------


class NetworkError(VoxlakeError):
    """The request did not get a complete HTTP response (connect/read/write/protocol error)."""

    transient = True

    def __init__(
        self,
        message: str,
        *,
        transcript_id: str | None = None,
        transient: bool | None = None,
        request_sent: bool = True,
    ) -> None:
        self.transcript_id = transcript_id
        # False when the failure happened before the request left (connect error, pool
        # timeout): then even a non-idempotent POST is safe to send again.
        self.request_sent = request_sent
        super().__init__(message, transient=transient)


class RequestTimeoutError(NetworkError, TimeoutError):
    """An httpx connect/read/write/pool timeout."""


# --- transcript outcomes ----------------------------------------------------------------------


class TranscriptFailedError(VoxlakeError):
    """The transcript finished with ``status: error``. Not billed by AssemblyAI."""

    def __init__(self, transcript_id: str, error: str | None) -> None:
        self.transcript_id = transcript_id
        self.error = error or "(no error text)"
        super().__init__(
            f"Transcript {transcript_id} failed: {self.error}. Check the media (is it audio, "
            "reachable, long enough?); resubmitting creates a new job"
        )


class PollTimeoutError(VoxlakeError, TimeoutError):
    """We stopped waiting; the job keeps running (and is billed) on AssemblyAI's side."""

    transient = True

    def __init__(self, transcript_id: str, waited_s: float, last_status: str | None) -> None:
        self.transcript_id = transcript_id
        self.waited_s = waited_s
        self.last_status = last_status
        super().__init__(
            f"Transcript {transcript_id} is still {last_status or 'pending'} after "
            f"{waited_s:.0f} s of polling. The job keeps running on AssemblyAI: do NOT resubmit "
            f"(that bills twice). Rerun the same command: the output's ledger resumes polling "
            f"it (docs/ledger.md); or poll transcript {transcript_id} by id "
            f"(wait_for_completion / get_transcript)"
        )


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitError,
}


def api_error_class(status_code: int, message: str = "") -> type[APIError]:
    """The APIError subclass for an HTTP status (and, for 403, the error text)."""
    if status_code == 403 and "cannot access uploaded file" in message.lower():
        return UploadAccessError
    if status_code >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status_code, APIError)


class ServeError(VoxlakeError):
    """``voxlake serve`` (or a server it starts, such as PostgreSQL) cannot go on; the message
    says what to do. Defined here, not in serve.py, so that the servers serve starts can raise
    it without importing serve."""
