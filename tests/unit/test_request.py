"""One request model for a run (voxlake.request.RunRequest): the CLI's options are built from
it, the flow's parameters are its fields, and every deployment's parameters validate with it.
No server is started: these read signatures, schemas and deployments/prefect.yaml."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tests.e2e.test_cli_help import _options, _voxlake
from voxlake.cli import run as cli_run
from voxlake.request import RunRequest

REPO = Path(__file__).resolve().parents[2]
FIELDS = [f.name for f in dataclasses.fields(RunRequest)]
#: The flow's in-process arguments: no fields of a request (no JSON form, no deployment's).
IN_PROCESS = ("credentials", "on_progress", "job_ends")


def _kebab(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_every_field_is_on_the_command_line_or_says_why_not() -> None:
    ways = [
        set(cli_run._RUN_FIELD_OPTIONS),
        set(cli_run._RUN_COMPOSED),
        set(cli_run._RUN_NOT_ON_CLI),
    ]
    assert set().union(*ways) == set(FIELDS)
    assert sum(len(way) for way in ways) == len(FIELDS), "a field is in two ways at once"


def test_run_help_shows_every_field_with_its_help_and_default() -> None:
    done = _voxlake("run", "--help", COLUMNS="200")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # the help's wrapping undone
    for name in [*cli_run._RUN_FIELD_OPTIONS, *cli_run._RUN_COMPOSED]:
        if name == "manifest":
            assert "manifest" in text
        elif name in cli_run._RUN_FIELD_OPTIONS:
            assert _kebab(name) in text, name
    for field in dataclasses.fields(RunRequest):
        if field.name in cli_run._RUN_FIELD_OPTIONS:
            assert " ".join(field.metadata["help"].split()) in text, field.name
    composed = [option for options in cli_run._RUN_COMPOSED.values() for option in options]
    assert {_kebab(option) for option in composed} <= set(_options("run"))
    assert "[default: 16]" in text  # --max-uploads: the model's default


def _flow_parameters() -> dict[str, inspect.Parameter]:
    from voxlake.flows.transcribe import transcribe_manifest

    params = inspect.signature(transcribe_manifest.fn).parameters
    return {name: p for name, p in params.items() if name not in IN_PROCESS}


def test_the_flow_takes_the_request_fields_with_their_defaults() -> None:
    params = _flow_parameters()
    assert list(params) == FIELDS
    for field in dataclasses.fields(RunRequest):
        default = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        assert params[field.name].default == default, field.name


def _comparable(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without what only one side writes (title, position, description),
    references spelled alike."""
    drop = {"title", "position", "description"}
    text = repr({k: v for k, v in schema.items() if k not in drop})
    return {"schema": re.sub(r"#/(\$defs|definitions)/", "#/", text)}


def test_the_flows_parameter_schema_is_the_requests() -> None:
    """Types and constraints as Prefect sees them (what a deployment's run is validated
    against), and each parameter described by the field's help."""
    from voxlake.flows.transcribe import transcribe_manifest

    flow_schema = transcribe_manifest.parameters.model_dump()["properties"]
    request_schema = RunRequest.json_schema()["properties"]
    assert list(flow_schema) == FIELDS
    for field in dataclasses.fields(RunRequest):
        name = field.name
        assert _comparable(flow_schema[name]) == _comparable(request_schema[name]), name
        assert flow_schema[name]["description"] == " ".join(field.metadata["help"].split())
    assert flow_schema["max_uploads"]["minimum"] == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max_uploads": 0}, "max_uploads"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"max_audio_hours": float("nan")}, "max_audio_hours"),
        ({"on_invalid": "ignore"}, "on_invalid"),
        ({"speech_model": "best"}, "speech_model"),  # a CLI option's name, not a parameter
        ({"s3": {"secret_access_key": "x"}}, "s3"),
    ],
)
def test_the_request_refuses_a_bad_value_naming_the_field(
    values: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        RunRequest.validate({"manifest": "data/", "output": "out", **values})
    assert raised.value.errors()[0]["loc"][0] == field


def _deployments() -> list[dict[str, Any]]:
    text = (REPO / "deployments" / "prefect.yaml").read_text()
    return list(yaml.safe_load(text)["deployments"])


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_every_deployments_parameters_validate(deployment: dict[str, Any]) -> None:
    parameters = dict(deployment.get("parameters") or {})
    entrypoint = deployment["entrypoint"]
    if entrypoint == "flows/transcribe.py:transcribe_manifest":
        # The shard deployment's manifest and output come from its backfill parent.
        if deployment["name"] == "shard":
            parameters = {"manifest": "shard.jsonl", "output": "out", **parameters}
        RunRequest.validate(parameters)
    else:
        assert entrypoint == "flows/backfill.py:backfill"
        from voxlake.flows.backfill import backfill

        backfill.validate_parameters(parameters)
        # What the backfill passes on to its shards is theirs, with the same types.
        shared = set(inspect.signature(backfill.fn).parameters) & set(FIELDS)
        run_schema = RunRequest.json_schema()["properties"]
        backfill_schema = backfill.parameters.model_dump()["properties"]
        for name in shared - {"on_invalid"}:  # the backfill's default is "skip"
            assert _comparable(backfill_schema[name]) == _comparable(run_schema[name]), name
