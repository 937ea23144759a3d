"""Which operation a request calls, found from the botocore model as AWS's front end finds it.

* ``json`` protocol (SageMaker): the ``X-Amz-Target: <targetPrefix>.<Operation>`` header.
* ``rest-json`` (Lambda, SageMaker Runtime): the method and the path against each operation's
  ``http.requestUri``: ``{Label}`` is one path segment, ``{Label+}`` the rest of the path,
  and query literals in the URI (``?List=ALL``) must be present. When several operations
  match, the one with more literals wins (``ListProvisionedConcurrencyConfigs`` over
  ``GetProvisionedConcurrencyConfig``).

Every operation of the model is routable, implemented or not, so a caller of an operation
local_aws lacks is told so by name instead of "unknown operation".
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.model import OperationModel, ServiceModel

_LABEL = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


@dataclass(frozen=True)
class Route:
    """One operation's ``requestUri``, compiled."""

    operation: OperationModel
    method: str
    path: re.Pattern[str]
    query: Mapping[str, str | None]  # literal query parameters; None: present with any value
    literal_length: int

    @classmethod
    def of(cls, operation: OperationModel) -> Route:
        uri = operation.http.get("requestUri", "/")
        path, _, query = uri.partition("?")
        pattern, position, literal_length = "", 0, 0
        for label in _LABEL.finditer(path):
            literal = path[position : label.start()]
            pattern += re.escape(literal) + (f"(?P<{label[1]}>.+)" if label[2] else f"(?P<{label[1]}>[^/]+)")
            literal_length += len(literal)
            position = label.end()
        pattern += re.escape(path[position:].rstrip("/"))
        literal_length += len(path) - position
        literals = {
            key: (value if "=" in part else None)
            for part in filter(None, query.split("&"))
            for key, _, value in [part.partition("=")]
        }
        return cls(operation, operation.http.get("method", "POST"), re.compile(pattern + "/?"), literals,
                   literal_length)  # fmt: skip

    def match(self, method: str, raw_path: str, query: Mapping[str, list[str]]) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.path.fullmatch(raw_path)
        if found is None:
            return None
        for key, value in self.query.items():
            if key not in query or (value is not None and value not in query[key]):
                return None
        return {name: urllib.parse.unquote(text) for name, text in found.groupdict().items()}


class RestRouter:
    """Operations of a rest-json model by method, path and query literals."""

    def __init__(self, model: ServiceModel):
        routes = [Route.of(model.operation_model(name)) for name in model.operation_names]
        # Most specific first: more query literals, then more literal path characters.
        self._routes = sorted(routes, key=lambda r: (len(r.query), r.literal_length), reverse=True)

    def match(
        self, method: str, raw_path: str, query: Mapping[str, list[str]]
    ) -> tuple[OperationModel, dict[str, str]] | None:
        """(operation, URI labels percent-decoded) or None. ``raw_path`` is still percent-encoded,
        so an encoded ``/`` inside a label (a function ARN, say) stays inside the label."""
        for route in self._routes:
            labels = route.match(method, raw_path, query)
            if labels is not None:
                return route.operation, labels
        return None


class JsonRouter:
    """Operations of a json-protocol model by ``X-Amz-Target``."""

    def __init__(self, model: ServiceModel):
        self.prefix = model.metadata["targetPrefix"] + "."
        self._model = model

    def claims(self, target: str | None) -> bool:
        return bool(target) and target.startswith(self.prefix)

    def match(self, target: str) -> OperationModel | None:
        name = target.removeprefix(self.prefix)
        if name not in self._model.operation_names:
            return None
        return self._model.operation_model(name)
