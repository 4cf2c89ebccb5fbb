"""Each endpoint setting is declared once (its field in ``endpoint.config.EndpointConfig``): the environment,
the CLI and docs/endpoint.md follow that declaration."""

from __future__ import annotations

from pathlib import Path

from endpoint.__main__ import parse_args
from endpoint.config import EndpointConfig, settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "endpoint.md"


def test_docs_name_every_settings_option_and_variable() -> None:
    # Given the endpoint's page
    text = DOCS.read_text()

    # Then every declared option and variable is documented
    missing = [
        name
        for spec, _ in settings().values()
        for name in (*([spec.option] if spec.option else []), *spec.variables)
        if f"`{name}" not in text
    ]
    assert missing == []


def test_every_option_sets_its_field_and_the_environment_its_own() -> None:
    # Given each declared option on the command line, and nothing in the environment
    args = parse_args(["--port", "0", "--max-models", "3", "--preload", "--serving", "managed", "--host", "::1"])

    # When the CLI's values override the environment's
    config = EndpointConfig.from_env(
        {"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_PORT": "9", "ENDPOINT_S3_MAX_ATTEMPTS": "5"},
        **{name: getattr(args, name) for name, (spec, _) in settings().items() if spec.option},
    )

    # Then an option lands on its field (CLI over env), and an env-only setting is read from its variable
    assert (config.port, config.max_models, config.host, config.serving) == (0, 3, "::1", "managed")
    assert config.s3_max_attempts == 5
    assert args.preload_modules == []
    # And the options' defaults are left to the declaration (None: not given)
    assert parse_args([]).workers is None
