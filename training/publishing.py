"""Upload training inputs, code and artifacts where a SageMaker job would read and write them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from house_prices import naming
from house_prices.errors import DependencyFailure
from training.results import RunReport


class S3Publisher:
    """Uploads training inputs, code and artifacts under one bucket/prefix; raises DependencyFailure."""

    def __init__(self, s3_client: Any, bucket: str, layout: naming.KeyLayout) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.layout = layout

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, path: Path, key: str) -> str:
        try:
            self._s3.upload_file(str(path), self.bucket, key)
        except (ClientError, BotoCoreError, S3UploadFailedError) as error:
            raise DependencyFailure(f"cannot upload {path} to s3://{self.bucket}/{key}: {error}") from error
        return key

    def publish_inputs(self, city: str, inputs: Mapping[str, Path]) -> list[str]:
        return [self.upload(path, self.layout.prep_key(city, split)) for split, path in sorted(inputs.items())]

    def publish_artifact(self, city: str, job: str, artifact: Path) -> str:
        return self.upload(artifact, self.layout.training_output_key(city, job))

    def publish_sourcedir(self, archive: Path) -> str:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        return self.uri(self.upload(archive, self.layout.sourcedir_key(digest)))


def publish_local_run(publisher: S3Publisher, report: RunReport) -> dict[str, list[str]]:
    """Upload each trained city's inputs, then its artifact last (the artifact triggers model-sync)."""
    keys: dict[str, list[str]] = {}
    for result in report.results:
        keys[result.city] = publisher.publish_inputs(result.city, result.inputs)
        keys[result.city].append(publisher.publish_artifact(result.city, result.job_name, result.artifact))
    return keys
