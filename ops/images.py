"""Region -> SageMaker scikit-learn image URI, from the generated table ``images.json``.

``images.json`` is generated (``python scripts/generate_image_table.py``) from two vendored inputs:
the SageMaker Python SDK's own ``image_uri_config/sklearn.json`` (tags per scope, account per
region) and what each supported tag carries (Python, scikit-learn, numpy, sagemaker-inference),
read from aws/sagemaker-scikit-learn-container. The SDK keeps training and inference tags apart:
``1.4-2`` is a training image only, ``1.4-2-py312`` serves. Nothing here is edited by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_FILE = Path(__file__).resolve().with_name("images.json")
SDK_CONFIG_FILE = REPO_ROOT / "vendor" / "sagemaker-python-sdk" / "sklearn.json"
SDK_SOURCE_FILE = REPO_ROOT / "vendor" / "sagemaker-python-sdk" / "source.json"
CONTAINER_TAGS_FILE = REPO_ROOT / "vendor" / "sagemaker-scikit-learn-container" / "tags.json"
TEMPLATE_FILE = REPO_ROOT / "template.yaml"

Scope = Literal["training", "inference"]
SCOPES: tuple[Scope, ...] = ("training", "inference")
# The SDK's image tag: "{version}-{processor}-{py_version}" (image_uris._format_tag).
TAG_FORMAT = "{version}-cpu-py3"
DEFAULT_DNS_SUFFIX = "amazonaws.com"


class UnknownRegion(ValueError):
    def __init__(self, region: str, known: list[str]) -> None:
        super().__init__(
            f"no SageMaker scikit-learn image is known for region {region!r}; known regions: {', '.join(known)} "
            f"(the table comes from the SageMaker Python SDK: see {IMAGES_FILE.name})"
        )
        self.region = region


class UnknownImageVersion(ValueError):
    pass


@dataclass(frozen=True)
class ImageTable:
    repository: str
    tag_format: str
    versions: Mapping[str, tuple[str, ...]]
    default_version: str
    accounts: Mapping[str, str]
    dns_suffixes: Mapping[str, str]
    containers: Mapping[str, Mapping[str, str]]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImageTable:
        return cls(
            repository=raw["repository"],
            tag_format=raw["tag_format"],
            versions={scope: tuple(raw["versions"][scope]) for scope in SCOPES},
            default_version=raw["default_version"],
            accounts=dict(raw["accounts"]),
            dns_suffixes=dict(raw.get("dns_suffixes", {})),
            containers={tag: dict(facts) for tag, facts in raw["containers"].items()},
        )

    def account(self, region: str) -> str:
        try:
            return self.accounts[region]
        except KeyError:
            raise UnknownRegion(region, sorted(self.accounts)) from None

    def domain(self, region: str) -> str:
        return self.dns_suffixes.get(region, DEFAULT_DNS_SUFFIX)

    def version_of(self, image_uri: str) -> str:
        """The image version of an image URI: ``...:1.4-2-py312-cpu-py3`` -> ``1.4-2-py312``."""
        repository, _, tag = image_uri.rpartition("/")[2].partition(":")
        prefix, _, suffix = self.tag_format.partition("{version}")
        version = tag[len(prefix) : len(tag) - len(suffix)] if suffix else tag[len(prefix) :]
        if repository != self.repository or not tag.startswith(prefix) or not tag.endswith(suffix) or not version:
            raise UnknownImageVersion(f"{image_uri!r} is not a {self.repository}:{self.tag_format} image")
        return version

    def image_uri(self, region: str, version: str | None = None, scope: Scope = "training") -> str:
        version = version or self.default_version
        if version not in self.versions[scope]:
            raise UnknownImageVersion(
                f"scikit-learn {scope} image version {version!r} is not one of {', '.join(self.versions[scope])}"
            )
        tag = self.tag_format.format(version=version)
        return f"{self.account(region)}.dkr.ecr.{region}.{self.domain(region)}/{self.repository}:{tag}"


@cache
def load_table(path: Path = IMAGES_FILE) -> ImageTable:
    return ImageTable.from_dict(json.loads(path.read_text()))


def sklearn_image_uri(region: str, version: str | None = None, scope: Scope = "training") -> str:
    return load_table().image_uri(region, version, scope)


# --- generation from the vendored SDK data -------------------------------------------------------


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """``1.4-2-py312`` -> ((1, 4, 2), "py312"): numeric parts first, a suffix breaks ties."""
    numbers = tuple(int(part) for part in re.findall(r"(?<![a-z])\d+", version.split("-py")[0]))
    return numbers, version.partition("-py")[2]


def build_table(
    sdk_config: Mapping[str, Any],
    sdk_source: Mapping[str, Any],
    container_tags: Mapping[str, Any],
    dns_suffix: Callable[[str], str],
) -> dict[str, Any]:
    """The content of ``images.json``: the SDK's tags that this project supports, per scope.

    Supported tags are those ``container_tags`` describes; each must be one the SDK lists in some
    scope. Every supported tag must come from one ECR repository with one account per region (the
    SDK's data has that shape; a change would need the template's mapping to change shape too).
    The default is the newest supported tag the SDK lists for both training and inference.
    """
    tags: Mapping[str, Mapping[str, str]] = container_tags["tags"]
    versions: dict[str, list[str]] = {}
    registries: dict[str, dict[str, str]] = {}
    repositories: set[str] = set()
    for scope in SCOPES:
        listed: Mapping[str, Any] = sdk_config[scope]["versions"]
        chosen = sorted((tag for tag in listed if tag in tags), key=version_key)
        versions[scope] = chosen
        for tag in chosen:
            entry = listed[tag]
            if entry.get("processors") != ["cpu"] or entry.get("py_versions") != ["py3"]:
                raise ValueError(f"{scope} {tag}: expected cpu/py3 only, got {entry.get('processors')}")
            repositories.add(entry["repository"])
            registries[f"{scope} {tag}"] = dict(entry["registries"])
    unknown = sorted(set(tags) - {tag for chosen in versions.values() for tag in chosen})
    if unknown:
        raise ValueError(f"tags {unknown} are in {CONTAINER_TAGS_FILE.name} but the SDK lists none of them")
    if len(repositories) != 1:
        raise ValueError(f"supported tags come from several repositories: {sorted(repositories)}")
    distinct = {json.dumps(regions, sort_keys=True) for regions in registries.values()}
    if len(distinct) != 1:
        raise ValueError("supported tags have different accounts or regions; the table needs one map")
    accounts = dict(sorted(next(iter(registries.values())).items()))
    both = [tag for tag in versions["inference"] if tag in versions["training"]]
    if not both:
        raise ValueError("no supported tag is listed for both training and inference")
    suffixes = {region: dns_suffix(region) for region in accounts}
    return {
        "_generated": "by scripts/generate_image_table.py from vendor/; do not edit",
        "sdk": {key: sdk_source[key] for key in ("repository", "version", "commit", "path")},
        "repository": repositories.pop(),
        "tag_format": TAG_FORMAT,
        "versions": versions,
        "default_version": both[-1],
        "containers": {tag: dict(tags[tag]) for tag in sorted(tags, key=version_key)},
        "accounts": accounts,
        "dns_suffixes": {region: suffix for region, suffix in suffixes.items() if suffix != DEFAULT_DNS_SUFFIX},
    }


def botocore_dns_suffix(region: str) -> str:
    """The partition's DNS suffix for ``region``, as the SDK derives ECR hostnames (via botocore)."""
    import botocore.session

    session = botocore.session.get_session()
    partition = session.get_partition_for_region(region)
    for candidate in session.get_component("endpoint_resolver")._endpoint_data["partitions"]:
        if candidate["partition"] == partition:
            return str(candidate["dnsSuffix"])
    raise ValueError(f"botocore knows no partition {partition!r} for {region}")


def load_inputs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return (
        json.loads(SDK_CONFIG_FILE.read_text()),
        json.loads(SDK_SOURCE_FILE.read_text()),
        json.loads(CONTAINER_TAGS_FILE.read_text()),
    )


# --- the template's copy -------------------------------------------------------------------------

MAPPING_BEGIN = "  # BEGIN SklearnImageAccounts: generated by scripts/generate_image_table.py from ops/images.json"
MAPPING_END = "  # END SklearnImageAccounts"


def render_template_mapping(table: Mapping[str, Any]) -> str:
    """The ``SklearnImageAccounts`` mapping block of template.yaml, markers included."""
    lines = [MAPPING_BEGIN, "  SklearnImageAccounts:"]
    lines += [f'    {region}: {{Account: "{account}"}}' for region, account in table["accounts"].items()]
    lines.append(MAPPING_END)
    return "\n".join(lines)


def replace_template_mapping(template_text: str, table: Mapping[str, Any]) -> str:
    begin, end = template_text.find(MAPPING_BEGIN), template_text.find(MAPPING_END)
    if begin < 0 or end < begin:
        raise ValueError(f"template has no '{MAPPING_BEGIN.strip()}' ... '{MAPPING_END.strip()}' block")
    return template_text[:begin] + render_template_mapping(table) + template_text[end + len(MAPPING_END) :]
