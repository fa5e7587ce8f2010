"""Fixtures of the operations suites: a staff superuser's admin client."""

from typing import Any

import pytest
from django.test import Client

from tests.factories import UserFactory


@pytest.fixture
def superuser(db: Any) -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client
