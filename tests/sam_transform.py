"""template.yaml through the real SAM transform, offline: one home for tests that need what CloudFormation
receives (generated roles, permissions, stages) rather than what we wrote."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from boto3.session import Session
from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = {"SourceDirS3Uri": "s3://deploy-bucket/house-prices-mme/sourcedir/abc/sourcedir.tar.gz"}


def decoded_template() -> dict[str, Any]:
    """template.yaml as written (intrinsic functions as cfn-lint decodes them), parsed afresh for each caller."""
    loaded, problems = decode(str(ROOT / "template.yaml"))
    assert not problems, problems
    return loaded


def source_template() -> dict[str, Any]:
    loaded = decoded_template()
    # Local paths are what `sam package` would replace with S3 locations.
    for resource in loaded["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://deploy-bucket/code.zip"
    return dict(loaded)


def transform(source: dict[str, Any]) -> dict[str, Any]:
    # An explicit offline session: this may run before the autouse fake-AWS environment.
    session = Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    translator = Translator(None, Parser(), boto_session=session)
    # The template names no managed policies, so the translator never needs to look one up.
    return dict(translator.translate(copy.deepcopy(source), dict(PARAMETERS), get_managed_policy_map=dict))


@cache
def _transformed() -> dict[str, Any]:
    return transform(source_template())


def transformed_template() -> dict[str, Any]:
    """The transformed template.yaml (computed once per process; a deep copy each call)."""
    return copy.deepcopy(_transformed())
