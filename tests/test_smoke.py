"""The app boots: health check and the login page."""

import pytest


@pytest.mark.django_db
def test_healthz_and_login_page(client):
    assert client.get("/healthz").status_code == 200
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"Sign in" in response.content
