"""Workers per model: the variable the managed scikit-learn image reads in multi-model mode, as a template parameter.

The image starts multi-model-server from its own config (``serving_mms.py`` fills ``config.properties.tmp``,
whose ``default_workers_per_model`` is ``$$SAGEMAKER_NUM_MODEL_WORKERS$$``, default 1) and hands that file to
its patched ``start_model_server``, which then skips the toolkit's config generation, the only reader of
``SAGEMAKER_MODEL_SERVER_WORKERS``. The vendored sources are checked here, so the template follows them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from endpoint.config import EndpointConfig
from local.template import LocalResources, Template

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "vendor" / "sagemaker-scikit-learn-container"
SERVING_MMS = VENDOR / "serving" / "sagemaker_sklearn_container" / "serving_mms.py"
MMS_PATCH = VENDOR / "serving" / "sagemaker_sklearn_container" / "mms_patch" / "model_server.py"
MMS_CONFIG = VENDOR / "docker" / "1.4-2-py312" / "resources" / "mms" / "config.properties.tmp"
SOURCE_DIR = "s3://deploy-bucket/house-prices-mme/code/sourcedir-0123456789ab.tar.gz"
DENSE_IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/house-prices/dense-mme:2026.12.07"


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


def model_environment(template: Template, **parameters: str) -> dict[str, str]:
    resources = LocalResources(parameters={"SourceDirS3Uri": SOURCE_DIR, **parameters})
    return dict(template.multi_model(resources).environment)


def test_the_images_model_server_takes_workers_per_model_from_sagemaker_num_model_workers() -> None:
    # Given the image's MMS config template and the code that fills it in multi-model mode
    config = MMS_CONFIG.read_text()
    serving = SERVING_MMS.read_text()
    # Then the workers of each model come from SAGEMAKER_NUM_MODEL_WORKERS, 1 unless set
    assert "default_workers_per_model=$$SAGEMAKER_NUM_MODEL_WORKERS$$" in config.splitlines()
    assert '_set_default_if_not_exist("SAGEMAKER_NUM_MODEL_WORKERS", MMS_NUM_MODEL_WORKERS_INIT)' in serving
    assert re.search(r"^MMS_NUM_MODEL_WORKERS_INIT = 1$", serving, re.MULTILINE)
    # And the server starts from that file, so the toolkit's generated config (SAGEMAKER_MODEL_SERVER_WORKERS) is
    # never written: the patched start_model_server only generates one when given no config file
    assert "config_file=get_mms_config_file_path()" in serving
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in serving + config
    assert re.search(r"if not config_file:\n\s+_create_model_server_config_file\(\)", MMS_PATCH.read_text())


def test_the_managed_image_gets_the_parameter_as_its_workers_per_model(template: Template) -> None:
    # Given the template's default, then a deployment with 3 workers per model
    default = model_environment(template)
    three = model_environment(template, ModelWorkersPerModel="3")
    # Then the Model's container environment carries the variable the image reads, with the image's default
    assert default["SAGEMAKER_NUM_MODEL_WORKERS"] == "1"
    assert three["SAGEMAKER_NUM_MODEL_WORKERS"] == "3"
    # And never the variable the image ignores in multi-model mode
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in default


def test_the_default_matches_the_images_own_default(template: Template) -> None:
    constant = re.search(r"^MMS_NUM_MODEL_WORKERS_INIT = (\d+)$", SERVING_MMS.read_text(), re.MULTILINE)
    assert constant is not None
    assert template.parameter_defaults["ModelWorkersPerModel"] == constant[1]


def test_the_dense_container_does_not_get_it(template: Template) -> None:
    # Given the stack deployed with the dense container, whose own workers serve every model
    environment = model_environment(template, ServingImageUri=DENSE_IMAGE, ModelWorkersPerModel="3")
    # Then the variable is not set at all
    assert "SAGEMAKER_NUM_MODEL_WORKERS" not in environment


def test_the_parameter_is_a_bounded_number_in_the_endpoint_group(template: Template) -> None:
    spec = template.document["Parameters"]["ModelWorkersPerModel"]
    assert spec["Type"] == "Number"
    assert spec["MinValue"] == 1
    assert spec["MaxValue"] >= 1
    groups = template.document["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    endpoint = next(group for group in groups if group["Label"]["default"] == "Endpoint")
    assert "ModelWorkersPerModel" in endpoint["Parameters"]


def test_the_local_endpoint_emulates_it_as_processes_each_holding_every_model(template: Template) -> None:
    # Given the managed Model's environment with 2 workers per model
    environment = {**model_environment(template, ModelWorkersPerModel="2"), "MODEL_DATA_URL": "s3://bucket/p/"}
    # When the local endpoint reads it
    config = EndpointConfig.from_env(environment)
    # Then it runs two worker processes, each loading its own copy of a model, as MMS's two workers per model do
    assert config.workers == 2
