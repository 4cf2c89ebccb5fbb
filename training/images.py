"""Region -> SageMaker scikit-learn image URI, from the data table in ``images.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

IMAGES_FILE = Path(__file__).resolve().with_name("images.json")


class UnknownRegion(ValueError):
    def __init__(self, region: str, known: list[str]) -> None:
        super().__init__(
            f"no SageMaker scikit-learn image is known for region {region!r}; known regions: {', '.join(known)} "
            f"(add it to {IMAGES_FILE.name})"
        )
        self.region = region


class UnknownImageVersion(ValueError):
    pass


@dataclass(frozen=True)
class ImageTable:
    repository: str
    tag_format: str
    versions: tuple[str, ...]
    default_version: str
    accounts: dict[str, str]
    domains: dict[str, str]
    default_domain: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImageTable:
        return cls(
            repository=raw["repository"],
            tag_format=raw["tag_format"],
            versions=tuple(raw["versions"]),
            default_version=raw["default_version"],
            accounts=dict(raw["accounts"]),
            domains=dict(raw.get("domains", {})),
            default_domain=raw.get("default_domain", "amazonaws.com"),
        )

    def account(self, region: str) -> str:
        try:
            return self.accounts[region]
        except KeyError:
            raise UnknownRegion(region, sorted(self.accounts)) from None

    def domain(self, region: str) -> str:
        for prefix, domain in self.domains.items():
            if region.startswith(prefix):
                return domain
        return self.default_domain

    def image_uri(self, region: str, version: str | None = None) -> str:
        version = version or self.default_version
        if version not in self.versions:
            raise UnknownImageVersion(
                f"scikit-learn image version {version!r} is not one of {', '.join(self.versions)}"
            )
        tag = self.tag_format.format(version=version)
        return f"{self.account(region)}.dkr.ecr.{region}.{self.domain(region)}/{self.repository}:{tag}"


@cache
def load_table(path: Path = IMAGES_FILE) -> ImageTable:
    return ImageTable.from_dict(json.loads(path.read_text()))


def sklearn_image_uri(region: str, version: str | None = None) -> str:
    return load_table().image_uri(region, version)
