"""The API's JSON parser: every malformed body is a ``400``, never a ``500``
(docs/protocol.md, "HTTP API")."""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class HeraldJSONParser(JSONParser):
    """DRF's ``JSONParser``, plus: JSON nested deeper than Python's recursion limit is a
    ``400 parse_error``. ``json`` raises ``RecursionError`` for it, not the ``ValueError`` that DRF
    turns into a ``ParseError``, so ``[[[[...]]]]`` in a body was a 500."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
