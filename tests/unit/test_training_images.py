"""The scikit-learn image table: generated from the SageMaker Python SDK's data, region lookup, versions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import load_yaml
from ops import images
from ops.images import UnknownImageVersion, load_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sdk_source() -> dict[str, Any]:
    return json.loads(images.SDK_SOURCE_FILE.read_text())


def test_committed_table_is_what_the_vendored_sdk_data_generates(sdk_source: dict[str, Any]) -> None:
    # Given the vendored SDK sklearn.json (with its version and commit) and the container facts
    # When the table is generated from them
    generated = images.build_table(*images.load_inputs(), dns_suffix=images.botocore_dns_suffix)
    committed = json.loads(images.IMAGES_FILE.read_text())
    # Then the committed ops/images.json is exactly that, and names the SDK version it came from
    assert committed == generated, (
        f"ops/images.json differs from SageMaker Python SDK {sdk_source['version']} "
        f"({sdk_source['commit']}): run python scripts/generate_image_table.py"
    )
    assert committed["sdk"]["version"] == sdk_source["version"]
    assert re.fullmatch(r"[0-9a-f]{40}", committed["sdk"]["commit"])


def test_table_agrees_with_the_sdk_tags_and_accounts(sdk_source: dict[str, Any]) -> None:
    # Given the SDK's own data, read independently of build_table
    sdk = json.loads(images.SDK_CONFIG_FILE.read_text())
    table = images.load_table()
    where = f"SageMaker Python SDK {sdk_source['version']}"
    for scope in images.SCOPES:
        for version in table.versions[scope]:
            # Then every tag the table offers for a scope is one the SDK lists for that scope, with its accounts
            assert version in sdk[scope]["versions"], f"{scope} {version} is not in {where}"
            assert sdk[scope]["versions"][version]["registries"] == table.accounts, (scope, version)
    # And the default serves and trains
    assert table.default_version in table.versions["inference"]
    assert table.default_version in table.versions["training"]
    # And 1.4-2 is a training image only (the SDK lists no 1.4-2 inference image)
    assert "1.4-2" in sdk["training"]["versions"]
    assert "1.4-2" not in sdk["inference"]["versions"]
    assert "1.4-2" not in table.versions["inference"]


def test_every_supported_tag_documents_what_it_carries() -> None:
    table = images.load_table()
    for scope in images.SCOPES:
        for version in table.versions[scope]:
            facts = table.containers[version]
            assert {"python", "scikit-learn", "numpy", "sagemaker-inference", "source"} <= set(facts), version
    assert table.containers[table.default_version]["python"] == "3.12"


def test_deploy_docs_list_each_inference_tag_with_its_versions() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    table = images.load_table()
    for version in table.versions["inference"]:
        facts = table.containers[version]
        row = f"| `{version}` | {facts['python']} | {facts['scikit-learn']} | {facts['numpy']} |"
        assert row in docs, f"docs/deploy.md lacks the image row {row!r}"


def test_template_mapping_and_parameter_are_the_generated_inference_table() -> None:
    # Given the template as CloudFormation reads it
    text = (ROOT / "template.yaml").read_text()
    template = load_yaml(text)
    table = json.loads(images.IMAGES_FILE.read_text())
    # Then its mapping is the generated block, covering every region the SDK lists for the images
    assert images.render_template_mapping(table) in text, "run python scripts/generate_image_table.py"
    mapping = template["Mappings"]["SklearnImageAccounts"]
    assert {region: row["Account"] for region, row in mapping.items()} == table["accounts"]
    # And the parameter offers exactly the inference tags, defaulting to the table's default
    parameter = template["Parameters"]["SklearnImageVersion"]
    assert parameter["AllowedValues"] == table["versions"]["inference"]
    assert parameter["Default"] == table["default_version"]


def test_build_table_rejects_a_supported_tag_the_sdk_does_not_list() -> None:
    sdk, source, tags = images.load_inputs()
    tags = {**tags, "tags": {**tags["tags"], "9.9-9": {"python": "3.13"}}}
    with pytest.raises(ValueError, match=r"9\.9-9.*the SDK lists none"):
        images.build_table(sdk, source, tags, dns_suffix=lambda region: "amazonaws.com")


@pytest.mark.parametrize(
    ("region", "version", "scope", "uri"),
    [
        (
            "us-east-1",
            "1.2-1",
            "inference",
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        ),
        (
            "us-west-2",
            "1.4-2",
            "training",
            "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
        ),
        (
            "il-central-1",
            "1.4-2-py312",
            "inference",
            "898809789911.dkr.ecr.il-central-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3",
        ),
        (
            "cn-north-1",
            "1.4-2-py312",
            "training",
            "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.4-2-py312-cpu-py3",
        ),
        (
            "us-iso-east-1",
            "1.2-1",
            "training",
            "833128469047.dkr.ecr.us-iso-east-1.c2s.ic.gov/sagemaker-scikit-learn:1.2-1-cpu-py3",
        ),
    ],
)
def test_image_uri_per_region(region: str, version: str, scope: images.Scope, uri: str) -> None:
    assert images.sklearn_image_uri(region, version, scope) == uri


def test_default_version_is_in_the_table() -> None:
    table = images.load_table()
    assert images.sklearn_image_uri("us-east-1").endswith(f":{table.default_version}-cpu-py3")


def test_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(images.UnknownRegion, match="no SageMaker scikit-learn image is known for region 'mars-1'"):
        images.sklearn_image_uri("mars-1")


def test_training_only_tag_is_no_inference_image() -> None:
    with pytest.raises(images.UnknownImageVersion, match=re.escape("inference image version '1.4-2' is not one of")):
        images.sklearn_image_uri("us-east-1", "1.4-2", "inference")


def test_unknown_version_is_a_clear_error() -> None:
    with pytest.raises(images.UnknownImageVersion, match=re.escape("'0.9-9' is not one of 1.2-1, 1.4-2, 1.4-2-py312")):
        images.sklearn_image_uri("us-east-1", "0.9-9")


def test_the_version_of_an_image_uri_is_its_tag_without_the_sdk_suffix() -> None:
    # Given the URI the template builds for the default inference image
    table = load_table()
    uri = table.image_uri("eu-west-1", table.default_version, "inference")
    # Then its version reads back; a URI of another repository or tag shape is refused
    assert table.version_of(uri) == table.default_version
    with pytest.raises(UnknownImageVersion):
        table.version_of("123.dkr.ecr.eu-west-1.amazonaws.com/other-repo:1.4-2-py312-cpu-py3")
    with pytest.raises(UnknownImageVersion):
        table.version_of(f"123.dkr.ecr.eu-west-1.amazonaws.com/{table.repository}:latest")
