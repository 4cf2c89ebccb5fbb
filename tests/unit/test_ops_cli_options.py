"""`python -m ops`'s global options: the same before and after any command (argument parsing only)."""

from __future__ import annotations

import pytest

from ops.cli import GLOBAL_OPTIONS, build_parser, main

# Each command with the positional arguments it needs.
COMMANDS = {
    "cities": [],
    "status": [],
    "versions": ["Chicago_IL"],
    "promote": ["Chicago_IL", "20261125T040000Z-1a2b3c4d"],
    "publish": ["Chicago_IL", "model.tar.gz"],
    "sync": ["Chicago_IL", "model.tar.gz"],
    "failed": [],
    "redrive": [],
    "plan": ["--models", "10", "--rps", "5"],
    "preflight": [],
    "outputs": [],
    "quality": [],
    "rollout": ["status"],
}
VALUES = {"--stack-file": "s.json", "--json": None}


def flag_argv(flag: str) -> list[str]:
    value = VALUES.get(flag, "x-value")
    return [flag] if value is None else [flag, value]


def test_every_command_is_covered() -> None:
    parser = build_parser()
    assert set(parser._subparsers._group_actions[0].choices) == set(COMMANDS)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("command", "flag"),
    [(command, flag) for command in sorted(COMMANDS) for flag, _ in GLOBAL_OPTIONS],
)
def test_a_global_option_means_the_same_before_and_after_the_command(command: str, flag: str) -> None:
    parser = build_parser()
    # When the option is given before the command, after it, or not at all
    before = parser.parse_args([*flag_argv(flag), command, *COMMANDS[command]])
    after = parser.parse_args([command, *COMMANDS[command], *flag_argv(flag)])
    neither = parser.parse_args([command, *COMMANDS[command]])
    dest = flag.removeprefix("--").replace("-", "_")
    # Then both set it, and leaving it out keeps the default
    assert str(getattr(before, dest)) == str(getattr(after, dest)) != str(getattr(neither, dest))
    assert vars(before) == vars(after)


def test_after_the_command_wins_over_before() -> None:
    args = build_parser().parse_args(["--region", "us-east-1", "preflight", "--region", "eu-west-3"])
    assert args.region == "eu-west-3"


def test_unknown_profile_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "removed-after-the-test")  # main() sets it; monkeypatch restores it
    assert main(["cities", "--table", "t", "--bucket", "b", "--profile", "nobody-has-this-profile"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "nobody-has-this-profile" in err
    assert len(err.strip().splitlines()) == 1
