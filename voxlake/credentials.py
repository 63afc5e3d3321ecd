"""Credentials as Prefect blocks: the AssemblyAI key, S3 credentials from prefect-aws, and the
webhook auth header value from a Prefect ``Secret`` block.

A Prefect server stores a block's ``SecretStr`` fields encrypted and hands them back to any
client of its API, so a deployment names a block (a plain string parameter) and the flow run
loads it: the secret is never a flow parameter, a log line or an artifact, and it is unwrapped
only where the HTTP client or botocore needs it. A caller in the flow's own process (``voxlake
run`` with its embedded server, a script) may hand the flow an unsaved block instead, which
Prefect records with the key masked. With neither, everything falls back to the environment
(``ASSEMBLYAI_API_KEY``, the AWS chain), which is read, never written.

``blocks/`` (top level) re-exports the block types for ``prefect block register -m blocks``.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from voxlake.client import AssemblyAIClient
from voxlake.errors import ConfigurationError
from voxlake.run.notified import BlockSecret
from voxlake.storage import S3Credentials


class AssemblyAICredentials(Block):
    """An AssemblyAI API key and the endpoint it belongs to (US, EU or any base URL)."""

    _block_type_name = "AssemblyAI Credentials"
    _block_type_slug = "assemblyai-credentials"
    # GitHub serves an organisation's avatar (square) at this address.
    _logo_url = HttpUrl("https://github.com/AssemblyAI.png")
    _description = (
        "An AssemblyAI API key (stored encrypted) and the region or base URL it is used with; "
        "get_client() builds voxlake's async AssemblyAI client from it."
    )
    _documentation_url = HttpUrl("https://www.assemblyai.com/docs/api-reference/overview")
    _code_example = """
    ```python
    from voxlake.credentials import AssemblyAICredentials

    credentials = AssemblyAICredentials.load("BLOCK_NAME")
    async with credentials.get_client() as client:
        transcript = await client.get_transcript("TRANSCRIPT_ID")
    ```
    """

    api_key: SecretStr = Field(
        description="The AssemblyAI API key (dashboard > API keys); stored encrypted."
    )
    region: Literal["us", "eu"] = Field(
        default="us",
        description="Data residency region: us (api.assemblyai.com) or eu (api.eu.assemblyai.com).",
    )
    base_url: str | None = Field(
        default=None,
        description="Another base URL (e.g. a voxlake serve-local instance); overrides region.",
    )

    def get_client(self, **kwargs: Any) -> AssemblyAIClient:
        """An :class:`AssemblyAIClient` for this key; ``kwargs`` go to the client (retry, ...).

        The block's fields decide the endpoint, never ``ASSEMBLYAI_*`` environment variables.
        """
        if self.base_url:
            return AssemblyAIClient(api_key=self.api_key, base_url=self.base_url, **kwargs)
        return AssemblyAIClient(api_key=self.api_key, region=self.region, **kwargs)


async def assemblyai_client(
    credentials: AssemblyAICredentials | str | None = None, **kwargs: Any
) -> AssemblyAIClient:
    """The flow's client: from the given block or the saved block of that name, else from the
    environment (``ASSEMBLYAI_*``)."""
    if credentials is None:
        return AssemblyAIClient(**kwargs)
    if isinstance(credentials, str):
        credentials = await AssemblyAICredentials.aload(credentials)
    return credentials.get_client(**kwargs)


def s3_credentials_from_aws(block: Any) -> S3Credentials:
    """Map a prefect-aws ``AwsCredentials`` block onto s3fs's options.

    Key, secret and session token stay ``SecretStr``; profile, region and the endpoint from
    ``aws_client_parameters`` come along. Role assumption is prefect-aws's own boto3 session
    logic, which s3fs cannot reuse, so it is refused rather than silently ignored.
    """
    if getattr(block, "assume_role_arn", None):
        raise ConfigurationError(
            "AwsCredentials with assume_role_arn is not supported for S3 media: give the block "
            "the assumed role's keys, or a profile that assumes the role (role_arn in "
            "~/.aws/config)"
        )
    key_id = block.aws_access_key_id
    params = block.aws_client_parameters
    return S3Credentials(
        key=SecretStr(key_id) if key_id else None,
        secret=block.aws_secret_access_key,
        token=SecretStr(block.aws_session_token) if block.aws_session_token else None,
        profile=block.profile_name,
        region=block.region_name,
        endpoint_url=params.endpoint_url if params is not None else None,
    )


async def aws_s3_credentials(block_name: str | None) -> S3Credentials | None:
    """Load the named ``AwsCredentials`` block (prefect-aws, extra ``aws``); None: AWS chain."""
    if block_name is None:
        return None
    try:
        from prefect_aws import AwsCredentials
    except ImportError:
        raise ConfigurationError(
            f"S3 credentials block {block_name!r} needs prefect-aws: "
            "pip install 'voxlake[aws]' (or uv sync --extra aws)"
        ) from None
    return s3_credentials_from_aws(await AwsCredentials.aload(block_name))


async def read_secret_block(name: str) -> BlockSecret:
    """The value of the Prefect ``Secret`` block ``name`` (``webhook_auth_header_value_secret``):
    a parameter names the block, so the secret is never one (Prefect records parameters)."""
    from prefect.blocks.system import Secret

    try:
        # Block.aload is typed loosely (a coroutine of an unknown block): this one is a Secret.
        block: Secret[Any] = await Secret.aload(name)
    except ValueError:  # Prefect's "Unable to find block document named ..."
        raise ConfigurationError(
            f"webhook_auth_header_value_secret: no Secret block named {name!r} on this Prefect "
            "API: save the receiver's secret as one (docs/operations.md, Webhooks)"
        ) from None
    value = block.value.get_secret_value()  # raw: Secret.get() would parse "123" as a number
    if not isinstance(value, str):
        raise ConfigurationError(
            f"webhook_auth_header_value_secret: the Secret block {name!r} holds a JSON "
            f"{type(value).__name__}, not the header value as a string"
        )
    return BlockSecret(name, SecretStr(value))
