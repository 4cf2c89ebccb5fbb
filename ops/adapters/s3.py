"""S3: does a bucket exist, may we use it, and in which region is it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import aws_error, error_code

_MISSING = {"404", "NoSuchBucket", "NotFound"}
_FORBIDDEN = {"403", "AccessDenied", "Forbidden"}


@dataclass(frozen=True)
class BucketState:
    name: str
    exists: bool
    # False when the bucket exists but HeadBucket is refused: another account's, or no s3:ListBucket.
    accessible: bool
    region: str | None


def _region(response: Any) -> str | None:
    if not isinstance(response, dict):
        return None
    if response.get("BucketRegion"):
        return str(response["BucketRegion"])
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None


class Buckets:
    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client

    def state(self, name: str) -> BucketState:
        try:
            response = self._s3.head_bucket(Bucket=name)
        except ClientError as error:
            code = error_code(error)
            if code in _MISSING:
                return BucketState(name, exists=False, accessible=False, region=None)
            if code in _FORBIDDEN:
                return BucketState(name, exists=True, accessible=False, region=_region(error.response))
            raise aws_error("s3:ListBucket", error) from error
        except BotoCoreError as error:
            raise aws_error("s3:ListBucket", error) from error
        return BucketState(name, exists=True, accessible=True, region=_region(response))
