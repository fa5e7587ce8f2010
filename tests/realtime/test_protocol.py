"""The protocol's constants agree between the server and the browser client.

``realtime/protocol.py`` and ``realtime/static/herald/protocol.js`` each define the
subprotocol, the close codes and the error codes; a client that disagreed with the server
would, e.g., reconnect forever on a close that means "stop".
"""

import re
from pathlib import Path

from realtime.protocol import SUBPROTOCOL, Close, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "realtime" / "static" / "herald" / "protocol.js"


def _frozen_object(source: str, name: str) -> dict[str, str]:
    body = re.search(rf"export const {name} = Object\.freeze\(\{{(.*?)\}}\);", source, re.S)
    assert body, f"{name} not found in {JS}"
    return dict(re.findall(r"(\w+):\s*\"?([\w.]+)\"?,", body.group(1)))


def test_the_js_client_uses_the_servers_codes():
    source = JS.read_text()
    assert re.search(rf'export const SUBPROTOCOL = "{re.escape(SUBPROTOCOL)}";', source)
    assert _frozen_object(source, "CLOSE") == {c.name: str(int(c)) for c in Close}
    assert _frozen_object(source, "ERROR") == {c.name: str(c) for c in ErrorCode}


def test_no_other_script_spells_a_close_code_or_the_subprotocol():
    """Comments aside, every other script takes them from protocol.js."""
    codes = "|".join(str(int(c)) for c in Close if c != Close.NORMAL)
    scripts = [*JS.parent.glob("*.js"), *(ROOT / "chat" / "static").rglob("*.js")]
    assert len(scripts) > 2
    for script in scripts:
        if script == JS:
            continue
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", script.read_text(), flags=re.S)
        assert not re.search(rf"\b({codes})\b", code), f"{script.name} spells a close code"
        assert SUBPROTOCOL not in code, f"{script.name} spells the subprotocol"
