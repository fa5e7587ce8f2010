"""Credentials in URLs never reach a log line, in any process (docs/security.md, "Logs")."""

import asyncio
import time

import httpx
import pytest

from tests.support.ws import open_socket

pytestmark = pytest.mark.crossprocess


async def test_tokens_and_tickets_in_query_strings_stay_out_of_every_log(cluster):
    p1, p2 = cluster.p1, cluster.p2
    tokens = await cluster.login("logs", p1)
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(
            f"{p2.http}/api/auth/ws-ticket/",
            headers={"Authorization": f"Bearer {tokens.access}"},
        )
        assert answer.status_code == 201, answer.text
        ticket = answer.json()["ticket"]

        by_token, hello_token = await open_socket(p1.ws, how="query", access=tokens.access)
        by_ticket, hello_ticket = await open_socket(p2.ws, how="ticket", ticket=ticket)
        assert hello_token["session_id"] == hello_ticket["session_id"] == tokens.session_id
        await asyncio.gather(by_token.close(), by_ticket.close())

        # The same credentials in plain HTTP query strings: daphne's access log writes an HTTP
        # request's path with its query, so these lines show the redaction at work.
        await http.get(f"{p1.http}/api/me/", params={"token": tokens.access})
        await http.get(f"{p2.http}/healthz", params={"ticket": ticket})

    # Wait until each process has logged those requests (the access log is stdout).
    deadline = time.monotonic() + 30
    expected = [(p1, "/api/me/?token=[redacted]"), (p2, "/healthz?ticket=[redacted]")]
    while not all(line in server.output() for server, line in expected):
        assert time.monotonic() < deadline, "the access log lines never appeared"
        await asyncio.sleep(0.2)
    for server in (p1, p2):
        assert "WSCONNECT /ws/" in server.output()  # the handshakes were logged too

    signature = tokens.access.rsplit(".", 1)[1]
    for server in cluster.servers:
        output = server.output()
        assert tokens.access not in output, f"the access token is in {server.name}'s output"
        assert signature not in output, f"the token's signature is in {server.name}'s output"
        assert ticket not in output, f"the ticket is in {server.name}'s output"
