"""Job runner pieces that need no process or socket: environment, S3 publishing, CreateTrainingJob."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from house_prices import naming
from house_prices.errors import DependencyFailure
from training import inputs, jobs, local_runs, packaging, publishing, results, sagemaker_jobs

BUCKET = "house-prices-test"
LAYOUT = naming.KeyLayout("DEMO_MME_SCIKIT_V1")
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
SKLEARN_REPO = "sagemaker-scikit-learn"
SOURCEDIR = "s3://house-prices-test/DEMO_MME_SCIKIT_V1/code/sourcedir-0123456789ab.tar.gz"


def test_environment_points_sm_variables_at_the_city_dir(tmp_path: Path) -> None:
    hps = inputs.Hyperparameters(n_estimators=50).for_city("Chicago_IL")
    env = local_runs.training_environment(tmp_path, hps, base={"PYTHONPATH": "/elsewhere", "HOME": "/root"})
    assert env["SM_MODEL_DIR"] == str(tmp_path / "model")
    assert env["SM_OUTPUT_DATA_DIR"] == str(tmp_path / "output" / "data")
    assert env["SM_CHANNEL_TRAIN"] == str(tmp_path / "input" / "data" / "train")
    assert env["SM_CHANNEL_VALIDATION"] == str(tmp_path / "input" / "data" / "validation")
    assert env["SM_CHANNEL_TEST"] == str(tmp_path / "input" / "data" / "test")
    assert json.loads(env["SM_HPS"]) == {
        "n-estimators": 50,
        "min-samples-leaf": 3,
        "model-name": "Chicago_IL",
        "random-state": 0,
    }
    # The common layer comes first, computed from the repo (not from the venv's .pth)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(local_runs.REPO_ROOT / "layers" / "common"), "/elsewhere"]
    assert (local_runs.REPO_ROOT / "layers" / "common" / "house_prices" / "schema.py").is_file()
    assert env["HOME"] == "/root"


def test_train_command_passes_hyperparameters_as_script_mode_does() -> None:
    command = local_runs.train_command({"n-estimators": 100, "model-name": "Dallas_TX"})
    assert command[1:] == [str(local_runs.TRAIN_SCRIPT), "--n-estimators", "100", "--model-name", "Dallas_TX"]
    assert local_runs.TRAIN_SCRIPT.is_file()


def test_write_inputs_uses_channel_dirs_and_seed_file_names(tmp_path: Path) -> None:
    from training import data

    written = inputs.write_inputs(data.generate_city("Dallas_TX", n=10), tmp_path)
    assert written == {
        "train": tmp_path / "input/data/train/Dallas_TX_train.csv",
        "val": tmp_path / "input/data/validation/Dallas_TX_val.csv",
        "test": tmp_path / "input/data/test/Dallas_TX_test.csv",
    }
    assert [len(path.read_text().splitlines()) for path in written.values()] == [6, 3, 1]


def expected_request(city: str, job: str, image: str) -> dict:
    """The CreateTrainingJob request, written out in full."""
    prep = f"s3://{BUCKET}/DEMO_MME_SCIKIT_V1/model_prep/{city}"
    return {
        "TrainingJobName": job,
        "HyperParameters": {
            "n-estimators": "100",
            "min-samples-leaf": "3",
            "model-name": f'"{city}"',
            "random-state": "0",
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"{SOURCEDIR}"',
            "sagemaker_region": '"us-west-2"',
            "sagemaker_job_name": f'"{job}"',
            "sagemaker_container_log_level": "20",
        },
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "validation:ae-p10", "Regex": "AE-at-10th-percentile: ([0-9.]+).*$"},
                {"Name": "validation:ae-p50", "Regex": "AE-at-50th-percentile: ([0-9.]+).*$"},
                {"Name": "validation:ae-p90", "Regex": "AE-at-90th-percentile: ([0-9.]+).*$"},
            ],
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{prep}/{split}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
            }
            for channel, split in (("train", "train"), ("validation", "val"), ("test", "test"))
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/DEMO_MME_SCIKIT_V1/model_artifacts/{city}/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "city", "Value": city}],
    }


def test_create_training_job_request_shape() -> None:
    # Given a SageMaker client whose API model validates every parameter
    client = boto3.client("sagemaker", region_name="us-west-2")
    settings = sagemaker_jobs.SageMakerSettings(role_arn=ROLE, region="us-west-2", image_version="1.4-2")
    image = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    job = "SanDiego-CA-20261125-040000-123"
    request = sagemaker_jobs.training_job_request(
        "SanDiego_CA",
        job,
        bucket=BUCKET,
        layout=LAYOUT,
        settings=settings,
        sourcedir_uri=SOURCEDIR,
        hyperparameters=inputs.Hyperparameters(),
    )
    with Stubber(client) as stub:
        stub.add_response(
            "create_training_job",
            {"TrainingJobArn": f"arn:aws:sagemaker:us-west-2:123456789012:training-job/{job}"},
            expected_params=expected_request("SanDiego_CA", job, image),
        )
        # When the request is sent / Then it is exactly the expected, API-valid shape
        response = client.create_training_job(**request)
        stub.assert_no_pending_responses()
    assert response["TrainingJobArn"].endswith(job)
    # And SageMaker's {job}/output/model.tar.gz under S3OutputPath is our training-output key
    output = request["OutputDataConfig"]["S3OutputPath"].removeprefix(f"s3://{BUCKET}/") + f"{job}/output/model.tar.gz"
    assert LAYOUT.parse_training_output_key(output).city == "SanDiego_CA"


def test_request_without_test_channel() -> None:
    request = sagemaker_jobs.training_job_request(
        "Chicago_IL",
        "Chicago-IL-1",
        bucket=BUCKET,
        layout=LAYOUT,
        settings=sagemaker_jobs.SageMakerSettings(ROLE, "us-east-1"),
        sourcedir_uri=SOURCEDIR,
        hyperparameters=inputs.Hyperparameters(random_state=None),
        include_test=False,
    )
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation"]
    assert "random-state" not in request["HyperParameters"]


@pytest.fixture
def s3():  # type: ignore[no-untyped-def]
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def all_keys(client) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(obj["Key"] for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_publisher_writes_prep_and_training_output_keys(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publisher = publishing.S3Publisher(s3, BUCKET, LAYOUT)
    inputs = {split: tmp_path / f"{split}.csv" for split in ("train", "val", "test")}
    for path in inputs.values():
        path.write_text("1,2,3,4,5,6,7\n")
    artifact = tmp_path / "model.tar.gz"
    artifact.write_bytes(b"archive")
    publisher.publish_inputs("Chicago_IL", inputs)
    key = publisher.publish_artifact("Chicago_IL", "Chicago-IL-20261125-040000-000", artifact)
    assert all_keys(s3) == [
        key,
        LAYOUT.prep_key("Chicago_IL", "test"),
        LAYOUT.prep_key("Chicago_IL", "train"),
        LAYOUT.prep_key("Chicago_IL", "val"),
    ]
    assert key == "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/Chicago-IL-20261125-040000-000/output/model.tar.gz"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"archive"


def test_publisher_failure_is_a_dependency_failure_naming_the_key(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("x")
    publisher = publishing.S3Publisher(s3, "no-such-bucket", LAYOUT)
    with pytest.raises(DependencyFailure, match="s3://no-such-bucket/k"):
        publisher.upload(tmp_path / "f", "k")


def test_submit_uploads_code_and_inputs_then_starts_one_job_per_city(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    settings = sagemaker_jobs.SageMakerSettings(ROLE, "eu-west-1", instance_type="ml.m5.xlarge", image_version="1.2-1")
    with Stubber(sagemaker) as stub:
        for city in ("Chicago_IL", "Dallas_TX"):
            stub.add_response(
                "create_training_job",
                {"TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:1:training-job/{city}"},
                expected_params={
                    "TrainingJobName": ANY,
                    "HyperParameters": ANY,
                    "AlgorithmSpecification": {
                        "TrainingImage": f"141502667606.dkr.ecr.eu-west-1.amazonaws.com/{SKLEARN_REPO}:1.2-1-cpu-py3",
                        "TrainingInputMode": "File",
                        "MetricDefinitions": ANY,
                    },
                    "RoleArn": ROLE,
                    "InputDataConfig": ANY,
                    "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{LAYOUT.training_output_prefix}{city}/"},
                    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
                    "StoppingCondition": ANY,
                    "Tags": ANY,
                },
            )
        submitted = sagemaker_jobs.submit_sagemaker_jobs(
            sagemaker, publishing.S3Publisher(s3, BUCKET, LAYOUT), ["Chicago_IL", "Dallas_TX"], tmp_path, settings
        )
        stub.assert_no_pending_responses()
    assert [job.city for job in submitted] == ["Chicago_IL", "Dallas_TX"]
    keys = all_keys(s3)
    code_keys = [key for key in keys if key.startswith("DEMO_MME_SCIKIT_V1/code/")]
    assert len(code_keys) == 1
    assert code_keys[0].endswith(".tar.gz")
    for city in ("Chicago_IL", "Dallas_TX"):
        assert {LAYOUT.prep_key(city, split) for split in naming.SPLITS} <= set(keys)
    # Nothing is written under the training-output prefix: SageMaker writes the artifacts itself
    assert not [key for key in keys if key.startswith(LAYOUT.training_output_prefix)]
    assert submitted[0].output_key == LAYOUT.training_output_key("Chicago_IL", submitted[0].job_name)
    assert (tmp_path / "sourcedir.tar.gz").is_file()
    assert packaging.ENTRY_POINT == "train.py"


def test_report_raises_with_each_failed_city_stderr() -> None:
    report = results.RunReport(
        failures=[results.CityFailure("Chicago_IL", "job", 1, "Traceback\nValueError: boom", 0.5)]
    )
    assert not report.ok
    with pytest.raises(results.TrainingJobFailed, match=r"(?s)Chicago_IL.*ValueError: boom"):
        report.raise_for_failures()


def test_cli_requires_a_bucket_to_publish(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        jobs.main(["--cities", "Chicago_IL", "--publish"])
    assert "--bucket is required" in capsys.readouterr().err


def test_cli_rejects_invalid_city_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        jobs.main(["--cities", "../etc"])
    assert "Invalid city name" in capsys.readouterr().err
