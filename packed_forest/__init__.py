"""Pickle-free, version-portable random forests: pack (training), validate and predict (numpy only).

``docs/model-format.md`` specifies the file. Importing this package never imports scikit-learn;
``packed_forest.pack`` does, and only training and the converter use it.
"""

from packed_forest.forest import PackedForest
from packed_forest.format import FORMAT_NAME, FORMAT_VERSION, PackedForestError, write

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PackedForest", "PackedForestError", "write"]
