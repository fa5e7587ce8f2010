"""The one rule for text Herald stores: no control characters (docs/protocol.md, "Errors and
limits").

A control character is Unicode's general category ``Cc`` (U+0000–U+001F, U+007F–U+009F), except
the three that belong in multi-line text: tab, line feed and carriage return. NUL cannot be
stored at all on PostgreSQL (``text`` and ``jsonb`` refuse U+0000, a 500 if it got that far);
the others are invisible, break terminals and logs, and no client needs them. Every stored text
a client sends goes through :func:`check_text`: message bodies (WebSocket ``message.send`` and
REST), room names, notification titles and bodies.
"""

import re

from django.core.exceptions import ValidationError

# Category Cc minus \t (U+0009), \n (U+000A) and \r (U+000D): tests/config/test_text.py checks
# it against unicodedata.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(value: str) -> str:
    """Return ``value`` unchanged; raise ``ValueError`` if it holds a control character.

    The message names the first one as ``U+XXXX``. Usable as a pydantic ``AfterValidator``
    (a WebSocket frame field: ``error invalid_message``); :func:`validate_text` is the form
    for Django and DRF fields.
    """
    found = _CONTROL.search(value)
    if found is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(found[0]):04X})")
    return value


def validate_text(value: str) -> None:
    """:func:`check_text` as a Django/DRF field validator: raises Django's
    ``ValidationError`` with code ``invalid`` (a REST ``400 {"code": "invalid"}``)."""
    try:
        check_text(value)
    except ValueError as error:
        raise ValidationError(str(error), code="invalid") from None
