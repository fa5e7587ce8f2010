"""Operations across processes: metrics summed over two daphne processes, readiness
when Redis stops, the admin's census and send form across processes, JSON logs without
credentials, and the sample nginx config in front of two processes.

``ops_pair`` is two daphne processes on the cluster's database and Redis that share one
``PROMETHEUS_MULTIPROC_DIR``, as two processes of one deployment on one machine do by default
(config/metrics_dir.py): a scrape of either reports both.
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.cluster import SHORT_ACCESS_LIFETIME, Cluster
from tests.support.metrics import scrape_value
from tests.support.rig import ROOT, Server, free_port, popen, start_redis, start_servers, stop, tail
from tests.support.ws import close_code, open_socket, recv_frame

pytestmark = pytest.mark.crossprocess

METRICS_TOKEN = "xproc-metrics-token-5c1e"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="module")
def ops_pair(cluster: Cluster) -> Iterator[tuple[Server, Server]]:
    cluster.create_users(["ops_a", "ops_b", "ops_logs", "ops_nginx", "ops_root"], ("ops_root",))
    metrics_dir = tempfile.mkdtemp(prefix="herald-ops-metrics-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
        pair = cluster.start_servers(
            ["ops1", "ops2"],
            stack,
            PROMETHEUS_MULTIPROC_DIR=metrics_dir,
            HERALD_METRICS_TOKEN=METRICS_TOKEN,
            HERALD_LOG_FORMAT="json",
        )
        yield pair[0], pair[1]


async def scrape(server: Server) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{server.http}/metrics", headers=SCRAPE)
    assert answer.status_code == 200, answer.text
    return answer.text


async def test_metrics_move_with_sockets_and_frames_across_two_processes(cluster, ops_pair):
    ops1, ops2 = ops_pair
    tokens = await cluster.login("ops_a", ops1)
    service = await cluster.login("service", ops1)
    before = await scrape(ops1)

    def delta(text: str, name: str, **labels: str) -> float:
        return scrape_value(text, name, **labels) - scrape_value(before, name, **labels)

    sockets = [
        (await open_socket(ops1.ws, access=tokens.access))[0],
        (await open_socket(ops1.ws, access=tokens.access))[0],
        (await open_socket(ops2.ws, access=tokens.access))[0],
    ]
    for i in range(3):
        await sockets[2].send(json.dumps({"type": "ping", "ref": i}))
        assert (await recv_frame(sockets[2]))["type"] == "pong"
    await cluster.notify(service, ops2, [cluster.users["ops_a"].id], "metered")
    for ws in sockets:
        assert (await recv_frame(ws))["type"] == "notification"
    with pytest.raises(ConnectionClosed) as refused:  # accepted only to close with 4401
        await open_socket(ops2.ws, access="not-a-token")
    assert refused.value.rcvd.code == 4401

    # Either process reports the machine: both processes' values, the same in both scrapes.
    one, two = await scrape(ops1), await scrape(ops2)
    for text in (one, two):
        assert delta(text, "herald_ws_open_sockets") == 3
        assert delta(text, "herald_ws_handshakes_total", outcome="accepted", code="none") == 3
        assert delta(text, "herald_ws_handshakes_total", outcome="rejected", code="4401") == 1
        assert delta(text, "herald_ws_frames_sent_total", type="hello") == 3
        assert delta(text, "herald_ws_frames_received_total", type="ping") == 3
        assert delta(text, "herald_ws_frames_sent_total", type="pong") == 3
        assert delta(text, "herald_ws_frames_sent_total", type="notification") == 3
        latency = "herald_delivery_latency_seconds_count"
        assert delta(text, latency, event="notification.created") == 3
        assert (
            delta(text, "herald_http_requests_total", route="/api/notifications/", status="201")
            >= 1
        )

    await asyncio.gather(*(ws.close() for ws in sockets))
    deadline = time.monotonic() + 15
    while True:
        text = await scrape(ops2)
        if delta(text, "herald_ws_open_sockets") == 0:
            break
        assert time.monotonic() < deadline, "open sockets never went back down"
        await asyncio.sleep(0.2)
    assert delta(text, "herald_ws_disconnects_total") == 3


async def test_metrics_need_the_token(ops_pair):
    async with httpx.AsyncClient(timeout=30) as http:
        anonymous = await http.get(f"{ops_pair[0].http}/metrics")
        wrong = await http.get(
            f"{ops_pair[0].http}/metrics", headers={"Authorization": "Bearer nope"}
        )
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert wrong.status_code == 401


def _admin_login(server: Server, username: str, password: str) -> httpx.Client:
    http = httpx.Client(base_url=server.http, timeout=60)
    http.get("/admin/login/")
    answer = http.post(
        "/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": f"{server.http}/admin/login/"},
    )
    assert answer.status_code == 302, answer.text[:500]
    return http


async def test_the_admin_counts_sockets_and_sends_across_processes(cluster, ops_pair):
    ops1, ops2 = ops_pair
    user = cluster.users["ops_b"]
    tokens = await cluster.login("ops_b", ops2)
    sockets = [(await open_socket(ops2.ws, access=tokens.access))[0] for _ in range(2)]
    root = cluster.users["ops_root"]
    http = await asyncio.to_thread(_admin_login, ops1, root.name, root.password)
    try:
        page = await asyncio.to_thread(http.get, f"/admin/accounts/user/{user.id}/change/")
        assert page.status_code == 200
        total = re.search(
            r"Open sockets \(all processes\):?</label>\s*<div class=\"readonly\">(\d+)</div>",
            page.text,
        )
        assert total, page.text[-3000:]
        assert total[1] == "2"  # both on ops2, counted from ops1

        form = await asyncio.to_thread(
            http.get, f"/admin/notifications/notification/send/?users={user.id}"
        )
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
        sent = await asyncio.to_thread(
            http.post,
            "/admin/notifications/notification/send/",
            data={
                "csrfmiddlewaretoken": csrf,
                "users": str(user.id),
                "title": "from the admin",
                "body": "",
                "data": "{}",
            },
            headers={"Referer": f"{ops1.http}/admin/"},
        )
        assert sent.status_code == 302, sent.text[-2000:]
        for ws in sockets:
            frame = await recv_frame(ws, 15)
            assert frame["type"] == "notification"
            assert frame["notification"]["title"] == "from the admin"
    finally:
        http.close()
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_json_logs_carry_the_socket_and_never_a_credential(cluster, ops_pair):
    ops1, ops2 = ops_pair
    tokens = await cluster.login("ops_logs", ops1)
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(
            f"{ops2.http}/api/auth/ws-ticket/", headers={"Authorization": f"Bearer {tokens.access}"}
        )
    ticket = answer.json()["ticket"]
    by_token, hello = await open_socket(ops1.ws, how="query", access=tokens.access)
    by_ticket, _ = await open_socket(ops2.ws, how="ticket", ticket=ticket)
    await by_token.send(json.dumps({"type": "auth.refresh", "token": tokens.access + "x"}))
    await recv_frame(by_token)  # an error frame: a bad token
    await asyncio.gather(by_token.close(), by_ticket.close())

    user_id = cluster.users["ops_logs"].id
    deadline = time.monotonic() + 15
    while True:
        lines = []
        for line in ops1.output().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if (
                    isinstance(record, dict)
                    and record.get("connection_id") == hello["connection_id"]
                ):
                    lines.append(record)
        if {"socket opened", "socket closed: code=1000"} <= {r["event"] for r in lines}:
            break
        assert time.monotonic() < deadline, ops1.output()[-3000:]
        await asyncio.sleep(0.2)
    assert all(r["user_id"] == user_id for r in lines)
    assert all({"time", "level", "logger"} <= set(r) for r in lines)
    for server in (ops1, ops2):
        output = server.output()
        assert tokens.access not in output
        assert tokens.access.rsplit(".", 1)[1] not in output
        assert ticket not in output


async def test_readiness_goes_503_when_redis_stops(cluster):
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="herald-ops-redis-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        redis = start_redis(tmp, stack)
        (server,) = await asyncio.to_thread(
            start_servers, ["ready"], cluster.env(REDIS_URL=redis.url), tmp, stack
        )
        async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"db": "ok", "channel_layer": "ok"}

            with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
                sock.sendall(b"SHUTDOWN NOSAVE\r\n")
                with contextlib.suppress(OSError):
                    sock.recv(64)

            deadline = time.monotonic() + 20
            while (answer := await http.get("/readyz")).status_code != 503:
                assert time.monotonic() < deadline, answer.text
                await asyncio.sleep(0.3)
            assert answer.json() == {"db": "ok", "channel_layer": "error"}
            assert (await http.get("/healthz")).status_code == 200  # the process is up


# nginx ------------------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _nginx_config(tmp: Path, port: int, upstreams: list[int]) -> Path:
    """docs' sample (config/deploy/nginx.conf) with our ports and paths, in a main config."""
    site = (ROOT / "config" / "deploy" / "nginx.conf").read_text()
    site = site.replace("server 127.0.0.1:8001;", f"server 127.0.0.1:{upstreams[0]};")
    site = site.replace("server 127.0.0.1:8002;", f"server 127.0.0.1:{upstreams[1]};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("/var/log/nginx/", f"{tmp}/")
    assert f"127.0.0.1:{port}" in site
    (tmp / "herald.conf").write_text(site)
    temp = tmp / "temp"
    temp.mkdir()
    temp.chmod(0o777)
    main = tmp / "nginx.conf"
    main.write_text(
        f"daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log info;\n"
        "worker_processes 1;\nevents { worker_connections 256; }\n"
        "http {\n"
        + "".join(
            f"  {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {tmp}/herald.conf;\n}}\n"
    )
    return main


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (bash .ci/system-deps)")
async def test_the_sample_nginx_config_serves_websockets_and_api(cluster, ops_pair):
    ops1, ops2 = ops_pair
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="herald-ops-nginx-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        port = free_port()
        config = _nginx_config(tmp, port, [ops1.port, ops2.port])
        check = subprocess.run(
            [NGINX, "-t", "-c", str(config), "-p", str(tmp)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        process = popen(
            [NGINX, "-c", str(config), "-p", str(tmp)], env=dict(os.environ), log=tmp / "out.log"
        )
        stack.callback(stop, process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        last = ""
        while True:
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"{base}/readyz", timeout=5)
                if answer.status_code == 200:
                    break
                last = f"{answer.status_code} {answer.text[:300]}"
            assert process.poll() is None, tail(tmp / "error.log")
            assert time.monotonic() < deadline, f"{last}\n{tail(tmp / 'herald.access.log')}"
            await asyncio.sleep(0.2)

        user = cluster.users["ops_nginx"]
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            answer = await http.post(
                "/api/auth/token/",
                json={"username": user.name, "password": user.password},
                headers={"X-Forwarded-For": "203.0.113.9"},  # a client's claim: overwritten
            )
            assert answer.status_code == 200, answer.text
            access = answer.json()["access"]
            service = await cluster.login("service", ops1)
            # Sockets through nginx, one per upstream turn (round robin), each gets hello...
            sockets = [
                (await open_socket(f"ws://127.0.0.1:{port}/ws/", how="query", access=access))
                for _ in range(2)
            ]
            # ...and a notification posted through nginx too.
            sent = await http.post(
                "/api/notifications/",
                json={"recipients": [user.id], "title": "via nginx", "body": ""},
                headers={"Authorization": f"Bearer {service.access}"},
            )
            assert sent.status_code == 201, sent.text
            for ws, hello in sockets:
                assert hello["user"]["id"] == user.id
                frame = await recv_frame(ws, 15)
                assert frame["notification"]["title"] == "via nginx"
            await asyncio.gather(*(ws.close() for ws, _ in sockets))
            assert (await http.get("/metrics", headers=SCRAPE)).status_code == 404

        access_log = (tmp / "herald.access.log").read_text()
        assert "GET /ws/ HTTP/1.1" in access_log
        assert access not in access_log
        assert "token=" not in access_log


async def test_sigterm_closes_every_socket_with_1001(cluster, ops_pair):
    """``python -m config.serve`` sends "going away" before stopping (plain daphne: 1006)."""
    with contextlib.ExitStack() as stack:
        (server,) = await asyncio.to_thread(cluster.start_servers, ["sigterm"], stack)
        tokens = await cluster.login("ops_a", server)
        sockets = [(await open_socket(server.ws, access=tokens.access))[0] for _ in range(3)]
        started = time.monotonic()
        server.process.terminate()
        codes = [await close_code(ws, 15) for ws in sockets]
        assert codes == [1001, 1001, 1001]
        assert time.monotonic() - started < 10
        assert server.process.wait(15) == 0


async def test_the_client_examples_send_listen_refresh_and_resume(cluster, ops_pair, short_pair):
    """docs/examples: a notification sent before the listener starts arrives by ``resume``, one
    sent after several access-token lifetimes arrives on the same socket (``auth.refresh``)."""
    short1, _ = short_pair
    cluster.create_users(["ops_listen"])
    listener = cluster.users["ops_listen"]
    created = cluster.shell(
        "from django.core.management import call_command\n"
        "call_command('herald_service_key', 'create', 'ops-notifier', '--scope', "
        "'notifications:send')"
    )
    api_key = created.strip().splitlines()[-1]  # printed once, alone on the last line
    examples = ROOT / "docs" / "examples"

    def send(title: str) -> None:
        out = subprocess.run(
            [sys.executable, str(examples / "send_notification.py"), short1.http, str(listener.id)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HERALD_API_KEY": api_key},
        )
        assert out.returncode == 0, out.stderr
        assert "'count': 1" in out.stdout

    send("before")  # stored while nobody listens
    tmp = Path(tempfile.mkdtemp(prefix="herald-ops-listen-"))
    out, err = (tmp / "out").open("w+"), (tmp / "err").open("w+")
    process = subprocess.Popen(
        [sys.executable, str(examples / "listen.py"), short1.http, listener.name]
        + [listener.password],
        stdout=out,
        stderr=err,
    )
    try:
        await asyncio.sleep(3 * SHORT_ACCESS_LIFETIME)  # several access tokens expire meanwhile
        send("after")
        deadline = time.monotonic() + 20
        while len(Path(out.name).read_text().splitlines()) < 2:
            assert process.poll() is None, Path(err.name).read_text()
            assert time.monotonic() < deadline, Path(err.name).read_text()
            await asyncio.sleep(0.2)
    finally:
        process.terminate()
        process.wait(10)
        out.close()
        err.close()
    printed = [json.loads(line) for line in Path(out.name).read_text().splitlines()]
    assert [n["seq"] for n in printed] == [1, 2]
    log = Path(err.name).read_text()
    assert log.count("connected") == 1, log  # one socket all along: refreshed, not reconnected
    assert log.count("refreshed") >= 2, log
    shutil.rmtree(tmp, ignore_errors=True)
