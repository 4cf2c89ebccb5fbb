"""Which image the local endpoint serves with: the template decides (ServingImageUri), StackConfig.serving may ask."""

from __future__ import annotations

import pytest

from local.stack import LOCAL_DENSE_IMAGE, StackConfig, plan_stack
from local.template import LOCAL_ACCOUNT_ID, Template, TemplateError

DENSE_IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/house-prices/dense-mme:2026.12.07"


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


def test_the_default_template_serves_with_the_emulated_managed_image(template: Template) -> None:
    plan = plan_stack(template, StackConfig())
    assert plan.serving == "managed"
    assert "SAGEMAKER_SKLEARN_VERSION" in plan.endpoint_environment


def test_an_image_uri_in_the_parameters_makes_the_endpoint_front_the_dense_container(template: Template) -> None:
    # Given the template deployed with the dense container's image
    plan = plan_stack(template, StackConfig(parameters={"ServingImageUri": DENSE_IMAGE}))
    # Then the endpoint is the SageMaker side, and hands the container the Model's whole environment, as AWS does
    assert plan.serving == "dense"
    model = template.multi_model(plan.resources)
    assert dict(plan.endpoint_environment) == dict(model.environment)
    # which is the dense container's: no sourcedir URL, no managed-image worker count, no sklearn tag
    assert "SAGEMAKER_SUBMIT_DIRECTORY" not in plan.endpoint_environment
    assert "SAGEMAKER_NUM_MODEL_WORKERS" not in plan.endpoint_environment
    assert "SAGEMAKER_SKLEARN_VERSION" not in plan.endpoint_environment


def test_dense_serving_without_an_image_resolves_the_template_with_a_stand_in(template: Template) -> None:
    # Given `make up SERVING=dense` (no image exists locally)
    plan = plan_stack(template, StackConfig(serving="dense"))
    # Then the template is resolved as if deployed with an image, so the environment is the deployed one
    assert plan.serving == "dense"
    stand_in = LOCAL_DENSE_IMAGE.format(account=LOCAL_ACCOUNT_ID, region="us-east-1")
    assert plan.resources.parameters["ServingImageUri"] == stand_in
    assert template.multi_model(plan.resources).image == stand_in
    assert (
        plan.endpoint_environment
        == plan_stack(template, StackConfig(parameters={"ServingImageUri": DENSE_IMAGE})).endpoint_environment
    )


def test_the_stand_in_image_is_one_the_parameter_admits(template: Template) -> None:
    import re

    pattern = template.document["Parameters"]["ServingImageUri"]["AllowedPattern"]
    assert re.fullmatch(pattern, LOCAL_DENSE_IMAGE.format(account=LOCAL_ACCOUNT_ID, region="eu-west-1"))


def test_asking_for_managed_serving_with_an_image_is_refused(template: Template) -> None:
    with pytest.raises(TemplateError, match="ServingImageUri"):
        plan_stack(template, StackConfig(serving="managed", parameters={"ServingImageUri": DENSE_IMAGE}))


def test_managed_serving_asked_for_explicitly_is_the_default(template: Template) -> None:
    assert plan_stack(template, StackConfig(serving="managed")) == plan_stack(template, StackConfig())
