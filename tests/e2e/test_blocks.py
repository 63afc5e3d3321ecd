"""The credential blocks: Prefect's standard block checks, a save/load round trip through a real
Prefect API (secret encrypted at rest, masked on the wire and in repr), and the prefect-aws
mapping onto s3fs against the moto S3 server with the AWS environment removed."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect_aws import AwsCredentials
from prefect_aws.credentials import AwsClientParameters

from tests.support.s3_fixtures import MotoS3
from tests.support.secrets import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, KEY_A
from voxlake.credentials import (
    AssemblyAICredentials,
    assemblyai_client,
    s3_credentials_from_aws,
)
from voxlake.emulator import LocalServer
from voxlake.errors import ConfigurationError
from voxlake.storage import s3_filesystem, use_s3_credentials

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestAssemblyAICredentialsStandard(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return AssemblyAICredentials

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # Prefect's version downloads the logo, and this machine has no internet: check what can
        # be checked offline (an https URL of an image), not the pixels.
        logo = str(block._logo_url)
        assert logo.startswith("https://") and logo.endswith((".png", ".svg")), logo


def test_repr_and_dump_mask_the_key() -> None:
    credentials = AssemblyAICredentials(api_key=KEY_A, region="eu")
    logging.getLogger("tests.blocks").info("block %r / %s", credentials, credentials)
    assert KEY_A not in repr(credentials) and KEY_A not in str(credentials)
    assert KEY_A not in credentials.model_dump_json()


def test_get_client_takes_the_endpoint_from_the_block_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSEMBLYAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "from-the-environment")
    eu = AssemblyAICredentials(api_key=KEY_A, region="eu").get_client()
    assert eu.settings.base_url == "https://api.eu.assemblyai.com"
    assert eu.settings.api_key.get_secret_value() == KEY_A
    other = AssemblyAICredentials(api_key=KEY_A, base_url="http://127.0.0.1:1/").get_client()
    assert other.settings.base_url == "http://127.0.0.1:1"


@pytest.mark.anyio
@pytest.mark.usefixtures("prefect_harness")
async def test_round_trip_through_the_prefect_api(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    monkeypatch.delenv("ASSEMBLYAI_BASE_URL", raising=False)
    await AssemblyAICredentials(api_key=KEY_A, base_url=local_server.base_url).asave(
        "round-trip", overwrite=True
    )

    # The flow's path: load by name, build the client, talk to the server with the real key.
    async with await assemblyai_client("round-trip") as client:
        page = await client.list_transcripts(limit=1)
    assert page.transcripts is not None

    # Masked for a client that does not ask for secrets ...
    async with get_client() as prefect:
        masked = await prefect.read_block_document_by_name(
            "round-trip", "assemblyai-credentials", include_secrets=False
        )
    assert masked.data["api_key"] != KEY_A
    # ... and encrypted at rest in the server's database.
    db_url = get_current_settings().server.database.connection_url
    assert db_url is not None
    db_path = db_url.get_secret_value().split("///", 1)[1]
    with sqlite3.connect(db_path) as db:
        stored = db.execute("select data from block_document where name = 'round-trip'").fetchone()
    assert stored is not None and KEY_A not in str(stored[0])


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_block_register_finds_the_block_module() -> None:
    # The CLI against the harness's API, from the repository root as the README says.
    env = {"PREFECT_API_URL": str(get_current_settings().api.url)}
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks.assemblyai"],
        cwd=REPO,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AssemblyAI Credentials" in done.stdout


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def test_aws_block_maps_onto_s3fs_without_the_aws_environment(
    moto_s3: MotoS3, make_bucket: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = make_bucket("from-a-block")  # with the session's environment, before it goes
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    block = AwsCredentials(
        aws_access_key_id=AWS_ACCESS_KEY_ID,
        aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=moto_s3.endpoint_url),
    )
    credentials = s3_credentials_from_aws(block)
    assert AWS_SECRET_ACCESS_KEY not in repr(credentials)
    assert AWS_ACCESS_KEY_ID not in repr(credentials)

    with use_s3_credentials(credentials):
        fs = s3_filesystem()
        fs.pipe(f"{bucket}/hello.txt", b"hi")
        assert fs.cat(f"{bucket}/hello.txt") == b"hi"
    assert fs.storage_options["endpoint_url"] == moto_s3.endpoint_url


def test_aws_block_with_a_role_to_assume_is_refused() -> None:
    block = AwsCredentials(assume_role_arn="arn:aws:iam::123456789012:role/x")
    with pytest.raises(ConfigurationError, match="assume_role_arn"):
        s3_credentials_from_aws(block)
