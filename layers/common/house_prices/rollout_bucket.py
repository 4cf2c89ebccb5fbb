"""Canary bucketing (docs/rollouts.md, "Bucketing"): which houses a city's candidate model answers, stable and sticky.

A house gets a **bucket** in ``[0, 10_000)`` (basis points) from BLAKE2b over a length-prefixed encoding
of ``(city, key, salt)``; the candidate answers when ``bucket < weight_basis_points``. Hence:

* **stable**: no ``hash()``, no PYTHONHASHSEED, no process state: every router, after every restart,
  puts a house in the same bucket (a subprocess test pins this, and a test pins a few digests);
* **sticky**: the same house (same ``house_id``, or the same features when it has none) keeps its arm
  while the weight is unchanged, and raising the weight only moves houses from live to the candidate,
  never back (the candidate's buckets at weight w are a subset of those at any w' > w);
* **uniform**: 64 bits of BLAKE2b reduced modulo 10,000 (bias < 10⁻¹⁵); per-decile counts over
  1,000,000 keys are within ±1 % of 100,000 (``bench/rollout_simulation.py`` checks 1M keys,
  the unit test 100k);
* **independent across rollouts**: a new salt per rollout draws a new set of houses, so one city's
  customers are not the guinea pigs of every rollout, and cities are independent of each other.

The encoding is unambiguous: each field is its UTF-8 length (4 bytes, big-endian) then its bytes, so
``("a", "bc")`` and ``("ab", "c")`` hash different messages. ``routing_key`` names a house: the caller's
``house_id`` when sent, else its feature values in ``schema.FEATURES`` order, each written as
``repr(float(v))`` (the shortest repr that reads back exactly), so ``3`` and ``3.0`` are the same house.
The two kinds of key carry different prefixes, so an id can never collide with a feature encoding.

Standard library only, and cheap: ``hashlib.blake2b`` is built in (no OpenSSL lookup at import) and
routing one house costs about a microsecond or two (``bench/rollout_simulation.py --routing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

from house_prices import schema

BASIS_POINTS = 10_000
# Domain separation: these digests are never comparable with any other use of BLAKE2b in the project.
_PERSON = b"hp-rollout-v1"
_ID_PREFIX = "id:"
_FEATURES_PREFIX = "f:"
_FEATURE_COUNT = len(schema.FEATURES)


def _message(city: str, key: str, salt: str) -> bytes:
    """The hashed bytes: each field length-prefixed, so field boundaries cannot shift."""
    return _field(city) + _field(key) + _field(salt)


def bucket(city: str, key: str, salt: str) -> int:
    """The house's bucket in ``[0, BASIS_POINTS)`` for this city's rollout (``salt``)."""
    digest = blake2b(_message(city, key, salt), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") % BASIS_POINTS


def routing_key(house_id: str | None, features: Sequence[float]) -> str:
    """The house's name for bucketing: ``house_id`` if given, else its features in schema order."""
    if house_id is not None:
        return _ID_PREFIX + house_id
    if len(features) != _FEATURE_COUNT:
        raise ValueError(f"expected {_FEATURE_COUNT} feature values in schema order, got {len(features)}")
    # + 0.0: -0.0 == 0.0 is the same house, and repr would tell them apart.
    return _FEATURES_PREFIX + ",".join([repr(float(value) + 0.0) for value in features])


def buckets(city: str, salt: str, rows: Sequence[Sequence[float]], house_ids: Sequence[str | None]) -> list[int]:
    """``bucket(city, routing_key(house_id, row), salt)`` for every house of a request, in order.

    The same digests as one ``bucket`` call per house, about a third cheaper: the city's length-prefixed
    field is hashed once and each house continues from a copy of that state (the router's routing cost
    grows with the batch, ``docs/rollouts.md``, Routing).
    """
    prefix = blake2b(digest_size=8, person=_PERSON)
    prefix.update(_field(city))
    salt_field = _field(salt)
    found = []
    for row, house_id in zip(rows, house_ids, strict=True):
        hasher = prefix.copy()
        hasher.update(_field(routing_key(house_id, row)) + salt_field)
        found.append(int.from_bytes(hasher.digest(), "big") % BASIS_POINTS)
    return found


def _field(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return len(encoded).to_bytes(4, "big") + encoded


def takes_candidate(bucket: int, weight_basis_points: int) -> bool:
    """Whether a house in ``bucket`` goes to the candidate at this canary weight (0 none … 10,000 all)."""
    if not 0 <= weight_basis_points <= BASIS_POINTS:
        raise ValueError(f"weight_basis_points must be between 0 and {BASIS_POINTS}, got {weight_basis_points}")
    return bucket < weight_basis_points
