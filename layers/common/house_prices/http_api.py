"""The HTTP API's routes: one table, read by everything that needs them.

The router registers its handlers from it (``router.handler``) and matches a request without a route
against it (``router.http_errors``: API Gateway's 404); ``house_prices.openapi`` describes exactly these
operations; template.yaml's HttpApi events are checked against it (tests/unit/test_template_structure.py),
and so is the local HTTP API, which reads its routes from the template.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Route(NamedTuple):
    method: str  # upper case, as API Gateway writes it in a route key
    path: str  # OpenAPI and API Gateway syntax: {city}
    operation_id: str  # the OpenAPI operationId and the router's handler's name

    @property
    def resolver_path(self) -> str:
        """The path in Powertools' resolver syntax (``<city>``)."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


PREDICTIONS = Route("POST", "/locations/{city}/predictions", "predict")
LOCATIONS = Route("GET", "/locations", "listLocations")
LOCATION = Route("GET", "/locations/{city}", "describeLocation")
HEALTH = Route("GET", "/health", "health")
OPENAPI = Route("GET", "/openapi.json", "openapi")
FEEDBACK = Route("POST", "/feedback", "feedback")
ROUTES: tuple[Route, ...] = (PREDICTIONS, LOCATIONS, LOCATION, HEALTH, OPENAPI, FEEDBACK)


def methods_by_resolver_path() -> dict[str, tuple[str, ...]]:
    """Each path (resolver syntax) with its methods: what a request without a route is told exists."""
    found: dict[str, tuple[str, ...]] = {}
    for route in ROUTES:
        found[route.resolver_path] = (*found.get(route.resolver_path, ()), route.method)
    return found
