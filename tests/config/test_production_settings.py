"""Production settings refuse a weak ``DJANGO_SECRET_KEY`` at start-up (Django's deployment
check security.W009, as an error): daphne itself does not start. docs/deployment.md."""

import contextlib
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.rig import ROOT, VAPID_KEY, free_port, popen, serve_argv, stop, temp_dir

pytestmark = pytest.mark.processes

GOOD = "herald-settings-test-not-a-secret-0123456789abcdefghijklmn"  # 59 characters
WEAK = {
    "short": "herald-short-key-0123456789abcdefghijklmnopqrstu",  # 49 characters
    "repetitive": "ab" * 40,
    "django placeholder": "django-insecure-" + "k3y" * 20,
}


def production_env(key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HERALD_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=key,
        DJANGO_DEBUG="0",
        HERALD_SSL_REDIRECT="0",
        HERALD_SECURE_COOKIES="0",
        HERALD_VAPID_PRIVATE_KEY=VAPID_KEY,
        HERALD_VAPID_SUBJECT="mailto:ops@example.com",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.mark.parametrize("kind", list(WEAK))
def test_daphne_does_not_start_with_a_weak_key(kind, tmp_path):
    log = tmp_path / "daphne.log"
    process = popen(serve_argv(free_port()), env=production_env(WEAK[kind]), log=log)
    try:
        process.wait(60)
    finally:
        stop(process)
    output = log.read_text()
    assert process.returncode != 0, output
    assert "ImproperlyConfigured" in output
    assert "DJANGO_SECRET_KEY must be at least 50 characters" in output
    assert WEAK[kind] not in output  # the key itself is never printed


@pytest.mark.parametrize("command", [["migrate", "--check"], ["check", "--deploy"]])
def test_manage_py_stops_too(command):
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=production_env(WEAK["short"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be at least 50 characters" in result.stderr


def test_a_strong_key_serves():
    with contextlib.ExitStack() as stack:
        tmp = temp_dir(stack, "herald-prodkey-")
        port = free_port()
        env = dict(production_env(GOOD), DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}")
        process = popen(serve_argv(port), env=env, log=tmp / "daphne.log")
        stack.callback(stop, process)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp / "daphne.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, (tmp / "daphne.log").read_text()
            time.sleep(0.2)
