"""Client settings: base URL / region, API key, timeouts, connection pool size.

The API key is a :class:`pydantic.SecretStr` from construction until the client builds request
headers (``voxlake.client._ApiKeyAuth``); ``repr``/``str`` show ``SecretStr('**********')``.

Resolution order (explicit arguments win over the environment):

- ``api_key``: argument, else ``ASSEMBLYAI_API_KEY``; missing -> :class:`ConfigurationError`.
- ``base_url``: argument, else ``region`` argument (``"us"``/``"eu"``), else
  ``ASSEMBLYAI_BASE_URL``, else ``ASSEMBLYAI_REGION``, else ``https://api.assemblyai.com``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from voxlake.errors import ConfigurationError

API_KEY_ENV = "ASSEMBLYAI_API_KEY"
BASE_URL_ENV = "ASSEMBLYAI_BASE_URL"
REGION_ENV = "ASSEMBLYAI_REGION"
REGION_BASE_URLS: dict[str, str] = {
    "us": "https://api.assemblyai.com",
    "eu": "https://api.eu.assemblyai.com",
}
Region = Literal["us", "eu"]


class ClientSettings(BaseModel):
    # hide_input_in_errors: a ValidationError must never echo the key back.
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True, extra="forbid")

    api_key: SecretStr
    base_url: str = REGION_BASE_URLS["us"]
    region: Region | None = None

    # Seconds. Normal requests are small JSON; a long read is for big transcripts.
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    write_timeout: float = Field(default=60.0, gt=0)
    pool_timeout: float | None = Field(default=None)
    # Uploads stream up to 2.2 GB: the server reads slowly and answers only at the end, so the
    # write and read timeouts of an upload are this long one (per operation, not total).
    upload_timeout: float = Field(default=600.0, gt=0)

    # One pool shared by all concurrent uploads/polls of a process. Keep-alive covers what a run
    # keeps in flight (16 uploads + 16 API calls + the poller), so connections are reused, not
    # churned; not more, as httpx checks every idle pooled connection on every request.
    max_connections: int = Field(default=100, ge=1)
    max_keepalive_connections: int = Field(default=40, ge=0)
    user_agent: str = "voxlake/0.1 (+AssemblyAI v2 batch client)"
    # AssemblyAI's account limit is 20,000 requests per 5 minutes; the client spaces its own
    # requests to stay under it (voxlake.ratelimit). Lower it when other producers share the
    # account; None turns the budget off.
    request_budget: int | None = Field(default=20_000, ge=1)
    request_budget_window_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["api_key"] = _resolve_api_key(data.get("api_key"))
        data["base_url"] = _resolve_base_url(data.get("base_url"), data.get("region"))
        return data

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )

    def upload_timeout_config(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.upload_timeout,
            write=self.upload_timeout,
            pool=self.pool_timeout,
        )

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=min(self.max_keepalive_connections, self.max_connections),
        )


def _resolve_api_key(value: Any) -> Any:
    value_text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if value_text is None:
        value_text = os.environ.get(API_KEY_ENV)
    if not isinstance(value_text, str) or not value_text.strip():
        raise ConfigurationError(
            "No AssemblyAI API key: pass api_key=... or set the environment variable "
            f"{API_KEY_ENV} (find the key in the AssemblyAI dashboard)."
        )
    return SecretStr(value_text.strip())


def _resolve_base_url(base_url: Any, region: Any) -> str:
    if base_url is None and region is None:
        base_url = os.environ.get(BASE_URL_ENV) or None
        region = os.environ.get(REGION_ENV) or None
    if base_url is None and region is not None:
        if region not in REGION_BASE_URLS:
            raise ConfigurationError(
                f"Unknown region {region!r}: use one of {sorted(REGION_BASE_URLS)} or base_url=..."
            )
        base_url = REGION_BASE_URLS[region]
    if base_url is None:
        base_url = REGION_BASE_URLS["us"]
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"Invalid AssemblyAI base URL {base_url!r}: it must start with http:// or https:// "
            f"(argument base_url or {BASE_URL_ENV})."
        )
    return base_url.rstrip("/")
