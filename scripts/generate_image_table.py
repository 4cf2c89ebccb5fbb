"""Regenerate ops/images.json and template.yaml's SklearnImageAccounts from the vendored SDK data.

    python scripts/generate_image_table.py           # write both
    python scripts/generate_image_table.py --check   # exit 1 if either is stale (what the tests assert)

Inputs: vendor/sagemaker-python-sdk/sklearn.json (+ source.json: SDK version and commit) and
vendor/sagemaker-scikit-learn-container/tags.json (the tags this project supports and what they carry).
The template's SklearnImageVersion AllowedValues/Default are checked by the tests, not rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ops import images


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the outputs are up to date")
    args = parser.parse_args(argv)

    table = images.build_table(*images.load_inputs(), dns_suffix=images.botocore_dns_suffix)
    table_text = json.dumps(table, indent=2) + "\n"
    template_text = images.TEMPLATE_FILE.read_text()
    new_template = images.replace_template_mapping(template_text, table)
    outputs = {
        images.IMAGES_FILE: (table_text, images.IMAGES_FILE.read_text()),
        images.TEMPLATE_FILE: (new_template, template_text),
    }
    stale = [path for path, (new, old) in outputs.items() if new != old]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(images.REPO_ROOT)} is stale: run python scripts/generate_image_table.py")
        return 1 if stale else 0
    for path in stale:
        path.write_text(outputs[path][0])
        print(f"wrote {path.relative_to(images.REPO_ROOT)}")
    sdk = table["sdk"]
    regions = len(table["accounts"])
    print(f"SageMaker Python SDK {sdk['version']} ({sdk['commit'][:12]}): {table['versions']}, {regions} regions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
