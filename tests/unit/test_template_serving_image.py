"""template.yaml's serving image: the managed scikit-learn image by default, the dense container when
``ServingImageUri`` is set; each with its image, its environment and pull rights on exactly its repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from local.stack import StackConfig, plan_stack
from local.template import LocalResources, Template
from tests.sam_transform import source_template, transform

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = "s3://deploy-bucket/house-prices-mme/code/sourcedir-0123456789ab.tar.gz"
DENSE_IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/house-prices/dense-mme:2026.12.07"
PULL_ACTIONS = {"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


def resources(image: str | None = None, region: str = "us-east-1") -> LocalResources:
    parameters = {"SourceDirS3Uri": SOURCE_DIR}
    if image is not None:
        parameters["ServingImageUri"] = image
    return LocalResources(region=region, parameters=parameters)


def execution_role_statements(template: Template, stack: LocalResources) -> list[dict[str, Any]]:
    policies = template.resolve(template.resources["SageMakerExecutionRole"]["Properties"]["Policies"], stack)
    return [statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]]


def ecr_grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each ECR action -> the resources it is granted on."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            if action.startswith("ecr:"):
                resource = statement["Resource"]
                grants.setdefault(action, set()).update(resource if isinstance(resource, list) else [resource])
    return grants


def pull_rights_on(repository_arn: str) -> dict[str, set[str]]:
    return {"ecr:GetAuthorizationToken": {"*"}, **{action: {repository_arn} for action in PULL_ACTIONS}}


def test_default_is_the_managed_scikit_learn_image_with_its_sourcedir(template: Template) -> None:
    # Given the stack deployed without ServingImageUri
    stack = resources()
    model = template.multi_model(stack)
    # Then the endpoint runs the region's scikit-learn image, exactly as before the parameter existed
    account = template.document["Mappings"]["SklearnImageAccounts"]["us-east-1"]["Account"]
    version = template.parameter_defaults["SklearnImageVersion"]
    assert model.image == f"{account}.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:{version}-cpu-py3"
    assert template.parameter_defaults["ServingImageUri"] == ""
    # And it downloads the project's hooks from the sourcedir
    assert model.environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model.environment["SAGEMAKER_SUBMIT_DIRECTORY"] == SOURCE_DIR
    # And its role pulls only sagemaker-scikit-learn and may read the sourcedir object
    statements = execution_role_statements(template, stack)
    repository = f"arn:aws:ecr:us-east-1:{account}:repository/sagemaker-scikit-learn"
    assert ecr_grants(statements) == pull_rights_on(repository)
    submit = [s for s in statements if s.get("Sid") == "ReadSubmitDirectory"]
    assert [s["Resource"] for s in submit] == [f"arn:aws:s3:::{SOURCE_DIR.removeprefix('s3://')}"]


def test_an_image_uri_serves_the_dense_container_with_pull_rights_on_its_repository(template: Template) -> None:
    # Given the stack deployed with the dense container's image
    stack = resources(DENSE_IMAGE)
    model = template.multi_model(stack)
    # Then the Model runs that image, still as a multi-model container over the same prefix
    assert model.image == DENSE_IMAGE
    assert model.model_data_url == template.multi_model(resources()).model_data_url
    # And it gets no sourcedir (the container has its program baked in and refuses a URL there)
    assert "SAGEMAKER_SUBMIT_DIRECTORY" not in model.environment
    assert model.environment["SAGEMAKER_PROGRAM"] == "inference.py"  # the container's own default
    assert model.environment["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "application/json"
    # And its role pulls exactly that repository, path segments included, and nothing of scikit-learn's
    statements = execution_role_statements(template, stack)
    repository = "arn:aws:ecr:us-east-1:111122223333:repository/house-prices/dense-mme"
    assert ecr_grants(statements) == pull_rights_on(repository)
    assert not [s for s in statements if s.get("Sid") == "ReadSubmitDirectory"]
    # And the models stay readable
    assert any(s.get("Sid") == "ReadMultiModelArtifacts" for s in statements)


@pytest.mark.parametrize(
    ("image", "region", "repository_arn"),
    [
        (
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com/dense:1",
            "eu-west-1",
            "arn:aws:ecr:eu-west-1:111122223333:repository/dense",
        ),
        (
            "111122223333.dkr.ecr.us-east-1.amazonaws.com/team/ml/dense-mme@sha256:" + "ab" * 32,
            "us-east-1",
            "arn:aws:ecr:us-east-1:111122223333:repository/team/ml/dense-mme",
        ),
        (
            "444455556666.dkr.ecr.us-west-2.amazonaws.com/a.b_c-d/e__f:v1.2.3-rc_1",
            "us-west-2",
            "arn:aws:ecr:us-west-2:444455556666:repository/a.b_c-d/e__f",
        ),
        (
            "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn/dense:1",
            "cn-north-1",
            # LocalResources' partition is always "aws"; CloudFormation says aws-cn there.
            "arn:aws:ecr:cn-north-1:111122223333:repository/dense",
        ),
    ],
)
def test_the_repository_arn_is_derived_from_the_uri(
    template: Template, image: str, region: str, repository_arn: str
) -> None:
    statements = execution_role_statements(template, resources(image, region=region))
    assert ecr_grants(statements)["ecr:BatchGetImage"] == {repository_arn}


def test_the_derivation_never_selects_out_of_range_even_for_the_empty_default(template: Template) -> None:
    """Given the dense branch of the pull policy evaluated with ServingImageUri empty (as it would be if
    CloudFormation evaluated an Fn::If branch it does not take), then every Fn::Select stays in range."""
    policies = template.resources["SageMakerExecutionRole"]["Properties"]["Policies"]
    dense_branch = next(p for p in policies if "Fn::If" in p)["Fn::If"][1]
    resolved = template.resolve(dense_branch, resources(""))
    pull = resolved["PolicyDocument"]["Statement"][1]
    assert pull["Resource"] == "arn:aws:ecr:us-east-1::repository/"


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("", True),
        (DENSE_IMAGE, True),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/dense@sha256:" + "0" * 64, True),
        ("111122223333.dkr.ecr.cn-northwest-1.amazonaws.com.cn/dense:latest", True),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/dense", False),  # no tag: which image is deployed?
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/Dense:1", False),  # ECR names are lower case
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/dense:", False),
        ("11112222333.dkr.ecr.us-east-1.amazonaws.com/dense:1", False),
        ("public.ecr.aws/acme/dense:1", False),  # SageMaker pulls private ECR images
        ("docker.io/library/python:3.12", False),
        ("https://111122223333.dkr.ecr.us-east-1.amazonaws.com/dense:1", False),
        (" 111122223333.dkr.ecr.us-east-1.amazonaws.com/dense:1", False),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com//dense:1", False),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/dense@sha256:abc", False),
    ],
)
def test_the_parameter_pattern_admits_ecr_image_uris_only(template: Template, value: str, allowed: bool) -> None:
    pattern = template.document["Parameters"]["ServingImageUri"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is allowed


def test_the_sam_transform_keeps_both_images_behind_the_condition() -> None:
    # Given the template through the real SAM transform
    transformed = transform(source_template())
    # Then CloudFormation receives the condition and the conditional image, environment and pull policy
    assert transformed["Conditions"]["UseServingImage"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ServingImageUri"}, ""]}]
    }
    container = transformed["Resources"]["MultiModel"]["Properties"]["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["Image"]["Fn::If"][:2] == ["UseServingImage", {"Ref": "ServingImageUri"}]
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"]["Fn::If"][0] == "UseServingImage"
    policies = transformed["Resources"]["SageMakerExecutionRole"]["Properties"]["Policies"]
    pull = next(p for p in policies if "Fn::If" in p)["Fn::If"]
    assert pull[0] == "UseServingImage"
    assert pull[1]["PolicyName"] == pull[2]["PolicyName"] == "PullInferenceImage"


def test_the_local_stack_still_reads_the_default_template() -> None:
    # Given the default parameters, when the local stack plans itself from the template
    plan = plan_stack(Template.load(ROOT / "template.yaml"), StackConfig())
    # Then its endpoint still emulates the managed scikit-learn image and runs the hooks
    assert plan.endpoint_environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert "SAGEMAKER_SKLEARN_VERSION" in plan.endpoint_environment
