"""Upload training inputs, code and artifacts where a SageMaker job would read and write them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from house_prices import naming
from house_prices.errors import DependencyFailure
from training.results import CityResult, RunReport


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

    def read_text(self, key: str) -> str | None:
        """The object's text, or None when there is no such key."""
        body = self.read_bytes(key)
        return None if body is None else body.decode()

    def read_bytes(self, key: str, limit: int = 64 * 2**20) -> bytes | None:
        """The object's bytes (at most ``limit``: these are small reports and manifests), or None if absent."""
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(limit + 1)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise DependencyFailure(f"cannot read s3://{self.bucket}/{key}: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"cannot read s3://{self.bucket}/{key}: {error}") from error
        if len(body) > limit:
            raise DependencyFailure(f"s3://{self.bucket}/{key} is larger than {limit} bytes")
        return bytes(body)

    def write_text(self, key: str, text: str) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode(), ContentType="application/json")
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"cannot write s3://{self.bucket}/{key}: {error}") from error

    def publish_inputs(self, city: str, inputs: Mapping[str, Path]) -> list[str]:
        return [self.upload(path, self.layout.prep_key(city, split)) for split, path in sorted(inputs.items())]

    def publish_artifact(self, city: str, job: str, artifact: Path) -> str:
        return self.upload(artifact, self.layout.training_output_key(city, job))

    def publish_sourcedir(self, archive: Path) -> str:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        return self.uri(self.upload(archive, self.layout.sourcedir_key(digest)))


# boto3 clients are thread-safe; uploads are network-bound, so a few threads hide the round trips.
PUBLISH_THREADS = 8


def publish_local_run(
    publisher: S3Publisher, report: RunReport, threads: int = PUBLISH_THREADS
) -> dict[str, list[str]]:
    """Upload each trained city's inputs, then its artifact last (the artifact triggers model-sync)."""

    def publish(result: CityResult) -> list[str]:
        keys = publisher.publish_inputs(result.city, result.inputs)
        return [*keys, publisher.publish_artifact(result.city, result.job_name, result.artifact)]

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        published = list(pool.map(publish, report.results))
    return {result.city: keys for result, keys in zip(report.results, published, strict=True)}
