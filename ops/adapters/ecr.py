"""ECR: is an image (``ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]/REPO:TAG`` or ``@sha256:...``) there."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import aws_error, error_code

_ABSENT = {"ImageNotFoundException", "RepositoryNotFoundException"}


def image_id(uri: str) -> tuple[str, str, dict[str, str]]:
    """``(registry id, repository, imageIds entry)`` of an ECR image URI."""
    host, _, path = uri.partition("/")
    if "@" in path:
        repository, _, digest = path.partition("@")
        return host.split(".", 1)[0], repository, {"imageDigest": digest}
    repository, _, tag = path.rpartition(":")
    return host.split(".", 1)[0], repository, {"imageTag": tag}


class Images:
    def __init__(self, ecr_client: Any) -> None:
        self._ecr = ecr_client

    def exists(self, uri: str) -> bool:
        registry, repository, image = image_id(uri)
        try:
            self._ecr.describe_images(registryId=registry, repositoryName=repository, imageIds=[image])
        except ClientError as error:
            if error_code(error) in _ABSENT:
                return False
            raise aws_error("ecr:DescribeImages", error) from error
        except BotoCoreError as error:
            raise aws_error("ecr:DescribeImages", error) from error
        return True
