"""Job runner pieces that need no process or socket: environment, S3 publishing, CreateTrainingJob."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from house_prices import naming, schema
from house_prices.errors import DependencyFailure
from training import data, inputs, jobs, local_runs, publishing, results, sagemaker_jobs, shards

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


def expected_request(job: str, image: str, segments: int) -> dict:
    """The CreateTrainingJob request of one shard, written out in full."""
    return {
        "TrainingJobName": job,
        "HyperParameters": {
            "n-estimators": "100",
            "min-samples-leaf": "3",
            "random-state": "0",
            "segments": '"true"',
            "job-name": f'"{job}"',
            "artifact-prefix": f'"s3://{BUCKET}/DEMO_MME_SCIKIT_V1/model_artifacts/"',
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
                {"Name": "segments:trained", "Regex": "Segments-trained: ([0-9]+)"},
                {"Name": "segments:failed", "Regex": "Segments-failed: ([0-9]+)"},
            ],
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/DEMO_MME_SCIKIT_V1/training_inputs/{job}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "CompressionType": "None",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/DEMO_MME_SCIKIT_V1/training_jobs/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "segments", "Value": str(segments)}],
    }


def test_create_training_job_request_shape() -> None:
    # Given a SageMaker client whose API model validates every parameter
    client = boto3.client("sagemaker", region_name="us-west-2")
    settings = sagemaker_jobs.SageMakerSettings(role_arn=ROLE, region="us-west-2", image_version="1.4-2")
    image = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    job = "segments-20261125-040000-123-00007"
    request = sagemaker_jobs.shard_job_request(
        job,
        segments=500,
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
            expected_params=expected_request(job, image, 500),
        )
        # When the request is sent / Then it is exactly the expected, API-valid shape
        response = client.create_training_job(**request)
        stub.assert_no_pending_responses()
    assert response["TrainingJobArn"].endswith(job)
    # And the job's own output stays outside the prefix whose model.tar.gz objects trigger model-sync
    assert not request["OutputDataConfig"]["S3OutputPath"].endswith(LAYOUT.training_output_prefix)
    # While each segment's upload (artifact-prefix + {city}/{job}/output/model.tar.gz) is a training-output key
    prefix = json.loads(request["HyperParameters"]["artifact-prefix"]).removeprefix(f"s3://{BUCKET}/")
    assert LAYOUT.parse_training_output_key(f"{prefix}SanDiego_CA/{job}/output/model.tar.gz").city == "SanDiego_CA"


def test_request_without_random_state() -> None:
    request = sagemaker_jobs.shard_job_request(
        "segments-1",
        segments=1,
        bucket=BUCKET,
        layout=LAYOUT,
        settings=sagemaker_jobs.SageMakerSettings(ROLE, "us-east-1"),
        sourcedir_uri=SOURCEDIR,
        hyperparameters=inputs.Hyperparameters(random_state=None),
    )
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train"]
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


def tiny_segment(city: str, rows: int = 10) -> shards.SegmentInput:
    """A segment whose rows are cheap to make (values are irrelevant to job submission)."""
    values = np.full((rows, len(schema.CSV_COLUMNS)), float(len(city)))
    indices = np.arange(rows)
    split = {"train": indices[: rows - 4], "val": indices[rows - 4 : rows - 1], "test": indices[rows - 1 :]}
    return shards.SegmentInput(data.CityData(city, values, split), data_hash=city)


def submit_with_stub(s3, tmp_path: Path, segments, per_job: int) -> tuple[list, list[dict]]:  # type: ignore[no-untyped-def]
    """Submit through a Stubber that records every CreateTrainingJob request it answers."""
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    settings = sagemaker_jobs.SageMakerSettings(ROLE, "eu-west-1", instance_type="ml.m5.xlarge", image_version="1.2-1")
    requests: list[dict] = []
    sagemaker.meta.events.register(
        "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **_: requests.append(params)
    )
    expected_jobs = -(-len(segments) // per_job)
    with Stubber(sagemaker) as stub:
        for index in range(expected_jobs):
            stub.add_response(
                "create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:1:training-job/j{index}"}
            )
        submitted = sagemaker_jobs.submit_sagemaker_jobs(
            sagemaker,
            publishing.S3Publisher(s3, BUCKET, LAYOUT),
            segments,
            tmp_path,
            settings,
            segments_per_job=per_job,
        )
        stub.assert_no_pending_responses()
    return submitted, requests


def test_ten_thousand_segments_at_500_per_job_make_exactly_20_training_jobs(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given 10,000 segments and --segments-per-job 500
    segments = [tiny_segment(f"City{index:05d}") for index in range(10_000)]
    # When they are submitted
    submitted, requests = submit_with_stub(s3, tmp_path, segments, per_job=500)
    # Then exactly 20 CreateTrainingJob requests went out, each for a shard of 500, every segment in one
    assert len(requests) == 20
    assert [len(job.cities) for job in submitted] == [500] * 20
    assert sorted(city for job in submitted for city in job.cities) == sorted(s.city for s in segments)
    assert {request["Tags"][0]["Value"] for request in requests} == {"500"}
    # And each job's train channel holds its shard, uploaded under its own prefix
    keys = set(all_keys_paginated(s3))
    for job in submitted:
        assert {f"{LAYOUT.shard_input_prefix(job.job_name)}{name}" for name in ("shard.npz", "segments.json")} <= keys
        assert job.output_keys[job.cities[0]] == LAYOUT.training_output_key(job.cities[0], job.job_name)
    # And nothing is written under the training-output prefix: the jobs upload the artifacts themselves
    assert not [key for key in keys if key.startswith(LAYOUT.training_output_prefix)]
    assert len([key for key in keys if key.startswith("DEMO_MME_SCIKIT_V1/code/")]) == 1


def test_shards_are_balanced_by_rows_and_respect_the_cap(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given segments of very different sizes, 3 per job at most
    segments = [tiny_segment(f"C{index}", rows) for index, rows in enumerate([400, 10, 10, 10, 200, 200, 10])]
    # When they are submitted
    submitted, requests = submit_with_stub(s3, tmp_path, segments, per_job=3)
    # Then ceil(7 / 3) = 3 jobs, none over the cap, and the biggest segment is left to itself
    assert len(requests) == 3
    assert all(len(job.cities) <= 3 for job in submitted)
    rows = {s.city: s.rows for s in segments}
    loads = sorted(sum(rows[city] for city in job.cities) for job in submitted)
    assert loads == [220, 220, 400]


def test_segment_inputs_are_published_at_the_prep_keys_the_gate_reads(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    segments = [tiny_segment("Chicago_IL"), tiny_segment("Dallas_TX")]
    sagemaker_jobs.publish_segment_inputs(publishing.S3Publisher(s3, BUCKET, LAYOUT), segments, tmp_path)
    assert set(all_keys(s3)) == {LAYOUT.prep_key(s.city, split) for s in segments for split in naming.SPLITS}
    val = s3.get_object(Bucket=BUCKET, Key=LAYOUT.prep_key("Dallas_TX", "val"))["Body"].read().decode()
    assert len(val.splitlines()) == 3


def all_keys_paginated(client) -> list[str]:  # type: ignore[no-untyped-def]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


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


def put_shard_report(s3, tmp_path: Path, job: str, segments: list[dict]) -> None:  # type: ignore[no-untyped-def]
    """What a finished shard job leaves under training_jobs/: its model.tar.gz holding report.json."""
    from house_prices.archives import package_model

    model_dir = tmp_path / job
    model_dir.mkdir()
    (model_dir / "report.json").write_text(json.dumps({"job": job, "segments": segments}))
    archive = package_model(model_dir, tmp_path / f"{job}.tar.gz")
    s3.upload_file(str(archive), BUCKET, f"{LAYOUT.training_jobs_prefix}{job}/output/model.tar.gz")


def test_a_finished_shard_job_reports_each_segment_and_a_failed_job_fails_every_one(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given a completed job whose report has one trained and one failed segment, and a job that failed outright
    done = sagemaker_jobs.SubmittedJob("segments-1-00000", "arn:1", ("A_city", "B_city"), {})
    lost = sagemaker_jobs.SubmittedJob("segments-1-00001", "arn:2", ("C_city",), {})
    put_shard_report(
        s3,
        tmp_path,
        done.job_name,
        [{"city": "A_city", "status": "trained", "metrics": {}}, {"city": "B_city", "status": "failed", "error": "E"}],
    )
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    publisher = publishing.S3Publisher(s3, BUCKET, LAYOUT)
    with Stubber(sagemaker) as stub:
        for job, status, extra in ((done, "Completed", {}), (lost, "Failed", {"FailureReason": "AlgorithmError: OOM"})):
            stub.add_response(
                "describe_training_job",
                {
                    "TrainingJobName": job.job_name,
                    "TrainingJobArn": job.arn,
                    "TrainingJobStatus": status,
                    "SecondaryStatus": status,
                    "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"},
                    "AlgorithmSpecification": {"TrainingInputMode": "File"},
                    "ResourceConfig": {"VolumeSizeInGB": 5},
                    "StoppingCondition": {},
                    "CreationTime": "2026-12-07T00:00:00Z",
                    **extra,
                },
                {"TrainingJobName": job.job_name},
            )
        # When their outcomes are read
        first = sagemaker_jobs.shard_outcomes(sagemaker, publisher, done)
        second = sagemaker_jobs.shard_outcomes(sagemaker, publisher, lost)
    # Then each segment has its own outcome, and the failed job's reason reaches its segments
    assert {city: entry["status"] for city, entry in first.items()} == {"A_city": "trained", "B_city": "failed"}
    assert second == {"C_city": {"status": "failed", "error": "AlgorithmError: OOM"}}


@pytest.mark.parametrize("tag", ["1.2-1", "1.4-2", "1.4-2-py312"])
def test_cli_accepts_every_training_image_tag(tag: str) -> None:
    # The docs show --image-version 1.4-2: a training tag, not a key of the image table
    assert jobs._parser().parse_args(["--cities", "Chicago_IL", "--image-version", tag]).image_version == tag


@pytest.mark.parametrize("flag", ["--all-notebook-cities", "--all-seed-cities"])
def test_cli_takes_the_notebook_cities_under_the_flag_s_new_and_first_name(flag: str) -> None:
    # Given the flag as the docs spell it now, or as scripts written before spelt it
    args = jobs._parser().parse_args([flag])
    # Then both select the notebook's cities
    assert args.all_notebook_cities is True


@pytest.mark.parametrize(
    "argv", [["--houses", "0"], ["--houses", "5x"], ["--workers", "0"], ["--segments-per-job", "-1"]]
)
def test_cli_refuses_bad_numbers_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        jobs.main(["--cities", "Chicago_IL", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"argument {argv[0]}" in err


def test_cli_without_credentials_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # Given no AWS credentials anywhere
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # When SageMaker mode is asked for
    code = jobs.main(["--cities", "Chicago_IL", "--houses", "20", "--mode", "sagemaker", "--bucket", BUCKET,
                      "--role-arn", ROLE, "--region", "us-east-1", "--work-dir", str(tmp_path)])  # fmt: skip
    # Then it fails with one line naming the problem, no traceback
    err = capsys.readouterr().err
    assert code == 2
    assert "Unable to locate credentials" in err
    assert "Traceback" not in err


class _RecordingPool:
    def __init__(self, started: list[str]) -> None:
        self.started = started
        started.append("started")

    def close(self) -> None:
        self.started.append("closed")


def test_local_runs_start_the_workers_before_validating_and_always_close_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file validation refuses (a header and no rows), and a recording stand-in for the workers' zygote
    events: list[str] = []
    monkeypatch.setattr(jobs, "start_workers", lambda: _RecordingPool(events))
    source = tmp_path / "houses.csv"
    source.write_text("city,price,sqft\n")
    argv = ["--data", str(source), "--segment-column", "city", "--price-column", "price", "--no-progress",
            "--work-dir", str(tmp_path / "work")]  # fmt: skip
    # When a local run fails validation, and when a run only validates
    assert jobs.main(argv) == 2
    assert events == ["started", "closed"]
    jobs.main([*argv, "--validate-only"])
    # Then the zygote was started before validation (its import overlaps it) and closed at the error; a
    # --validate-only run never starts it
    assert events == ["started", "closed"]


def test_a_zygote_started_before_the_clis_imports_is_used_by_a_local_run_and_closed_by_any_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given `python -m training.jobs`'s early zygote (a recording stand-in) and no other way to start one
    events: list[str] = []
    monkeypatch.setattr(jobs, "start_workers", lambda: pytest.fail("the early zygote is there to be used"))
    source = tmp_path / "houses.csv"
    source.write_text("city,price,sqft\n")
    argv = ["--data", str(source), "--segment-column", "city", "--price-column", "price", "--no-progress",
            "--work-dir", str(tmp_path / "work")]  # fmt: skip
    # When a local run gets it, and when a run that only validates, a SageMaker run and a usage error get one
    assert jobs.main(argv, pool=_RecordingPool(events)) == 2  # validation refuses the header-only file
    # Then each is closed (the local run's by the run, the others unused), and none starts another
    assert events[-1] == "closed"
    for other in ([*argv, "--validate-only"], [*argv, "--mode", "sagemaker"], ["--data", str(source)]):
        events.clear()
        with contextlib.suppress(SystemExit):  # the last two are usage errors
            jobs.main(other, pool=_RecordingPool(events))
        assert events[-1] == "closed", other


def test_the_early_zygote_starts_only_for_what_looks_like_a_local_training_run() -> None:
    from training.workers import trains_locally

    assert trains_locally(["--data", "f.csv", "--segment-column", "c", "--price-column", "p", "--workers", "2"])
    assert trains_locally(["--cities", "Chicago_IL", "--mode", "local"])
    for argv in (["--data", "f.csv", "--validate-only"], ["--data", "f.csv", "--validate"], ["--mode", "sagemaker"],
                 ["--mode=sagemaker"], ["-h"], ["--help"]):  # fmt: skip
        assert not trains_locally(argv), argv
