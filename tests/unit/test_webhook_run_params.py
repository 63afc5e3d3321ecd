"""Webhook mode's parameters: the secret only in the request body, never in a repr, a
parameter or the options hash (voxlake.run.notified, voxlake.models.TranscriptParams)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.support.secrets import WEBHOOK_SECRET
from voxlake.errors import ConfigurationError
from voxlake.manifest import TranscriptionOptions
from voxlake.request import RunRequest
from voxlake.run.notified import run_webhook


def test_the_secret_is_in_the_request_body_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_AUTH", WEBHOOK_SECRET)
    webhook = run_webhook("https://hooks.example.com/voxlake/webhook", "X-Hook", "HOOK_AUTH", 60)
    assert webhook is not None
    options = TranscriptionOptions(speech_models=["universal-2"])
    plain = options.request("https://media.example.com/a.wav")
    params = plain.model_copy(update=webhook.params())
    body = params.to_request()
    assert body["webhook_auth_header_value"] == WEBHOOK_SECRET
    assert body["webhook_auth_header_name"] == "X-Hook"
    assert body["webhook_url"] == "https://hooks.example.com/voxlake/webhook"
    for shown in (repr(params), str(params), repr(webhook), params.model_dump_json()):
        assert WEBHOOK_SECRET not in shown
    # The request without the webhook is the same but for it.
    assert {k: v for k, v in body.items() if not k.startswith("webhook_")} == plain.to_request()


def test_no_run_parameter_holds_the_secret() -> None:
    names = {f.name for f in dataclasses.fields(RunRequest)}
    assert "webhook_auth_header_value_env" in names
    assert "webhook_auth_header_value" not in names


@pytest.mark.parametrize(
    ("url", "env", "said"),
    [
        (None, "HOOK_AUTH", "without --webhook-url"),
        ("ftp://x/y", "HOOK_AUTH", "not an http(s) URL"),
        ("https://x/voxlake/webhook", None, "needs --webhook-auth-header-value-env"),
        ("https://x/voxlake/webhook", "VOXLAKE_TEST_UNSET_HOOK", "is not set"),
    ],
)
def test_webhook_settings_refused_with_one_clear_line(
    url: str | None, env: str | None, said: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(said)):
        run_webhook(url, "X-Hook", env, 60)


def test_no_webhook_is_polling() -> None:
    assert run_webhook(None, "X-Hook", None, 60) is None


def test_a_secret_block_gives_the_value_instead_of_a_variable() -> None:
    from pydantic import SecretStr

    from voxlake.run.notified import BlockSecret

    url = "https://hooks.example.com/voxlake/webhook"
    secret = BlockSecret("hooks", SecretStr(WEBHOOK_SECRET))
    webhook = run_webhook(url, "X-Hook", None, 60, secret=secret)
    assert webhook is not None
    assert webhook.auth.header_value.get_secret_value() == WEBHOOK_SECRET
    assert WEBHOOK_SECRET not in repr(secret) + repr(webhook)
    with pytest.raises(ConfigurationError, match="not both"):
        run_webhook(url, "X-Hook", "HOOK_AUTH", 60, secret=secret)
    with pytest.raises(ConfigurationError, match=re.escape("without --webhook-url")):
        run_webhook(None, "X-Hook", None, 60, secret=secret)
    with pytest.raises(ConfigurationError, match=re.escape("the Secret block 'blank'")):
        run_webhook(url, "X-Hook", None, 60, secret=BlockSecret("blank", SecretStr("  ")))
