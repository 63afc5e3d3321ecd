"""ClientSettings: key from argument or environment, base URL / region resolution, timeouts."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from tests.support.secrets import KEY_A, KEY_B
from voxlake.client import AssemblyAIClient
from voxlake.config import ClientSettings
from voxlake.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    monkeypatch.delenv("ASSEMBLYAI_BASE_URL", raising=False)


def test_missing_key_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientSettings()
    assert "ASSEMBLYAI_API_KEY" in str(info.value) and "api_key" in str(info.value)
    with pytest.raises(ConfigurationError):
        ClientSettings(api_key="   ")
    with pytest.raises(ConfigurationError):
        AssemblyAIClient()


def test_key_from_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", KEY_B)
    assert ClientSettings().api_key.get_secret_value() == KEY_B
    assert ClientSettings(api_key=KEY_A).api_key.get_secret_value() == KEY_A
    assert ClientSettings(api_key=SecretStr(KEY_A)).api_key.get_secret_value() == KEY_A


def test_base_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClientSettings(api_key=KEY_A).base_url == "https://api.assemblyai.com"
    assert ClientSettings(api_key=KEY_A, region="eu").base_url == "https://api.eu.assemblyai.com"
    monkeypatch.setenv("ASSEMBLYAI_BASE_URL", "http://127.0.0.1:9/")
    assert ClientSettings(api_key=KEY_A).base_url == "http://127.0.0.1:9"
    assert ClientSettings(api_key=KEY_A, base_url="http://h:1").base_url == "http://h:1"
    assert ClientSettings(api_key=KEY_A, region="eu").base_url == "https://api.eu.assemblyai.com"
    with pytest.raises(ConfigurationError):
        ClientSettings(api_key=KEY_A, base_url="api.assemblyai.com")
    with pytest.raises(ConfigurationError):
        ClientSettings(api_key=KEY_A, region="mars")


def test_region_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSEMBLYAI_BASE_URL", raising=False)
    monkeypatch.setenv("ASSEMBLYAI_REGION", "eu")
    assert ClientSettings(api_key=KEY_A).base_url == "https://api.eu.assemblyai.com"
    monkeypatch.setenv("ASSEMBLYAI_BASE_URL", "http://127.0.0.1:9")
    assert ClientSettings(api_key=KEY_A).base_url == "http://127.0.0.1:9"  # URL wins
    monkeypatch.delenv("ASSEMBLYAI_BASE_URL")
    monkeypatch.setenv("ASSEMBLYAI_REGION", "mars")
    with pytest.raises(ConfigurationError, match="mars"):
        ClientSettings(api_key=KEY_A)


def test_reprs_hide_the_key() -> None:
    settings = ClientSettings(api_key=KEY_A, upload_timeout=1200)
    assert "SecretStr('**********')" in repr(settings)
    assert KEY_A not in repr(settings) and KEY_A not in str(settings)
    assert KEY_A not in settings.model_dump_json()
    client = AssemblyAIClient(settings)
    assert KEY_A not in repr(client) and KEY_A not in str(client)
    assert KEY_A not in repr(vars(client))


def test_timeouts_and_pool() -> None:
    s = ClientSettings(api_key=KEY_A, read_timeout=5, upload_timeout=900, max_connections=250)
    assert s.timeout() == httpx.Timeout(connect=10, read=5, write=60, pool=None)
    up = s.upload_timeout_config()
    assert up.read == 900 and up.write == 900
    assert s.limits().max_connections == 250
    c = AssemblyAIClient(api_key=KEY_A, max_connections=7)
    assert c.settings.max_connections == 7


def test_settings_and_kwargs_are_exclusive() -> None:
    with pytest.raises(ConfigurationError):
        AssemblyAIClient(ClientSettings(api_key=KEY_A), api_key=KEY_B)
