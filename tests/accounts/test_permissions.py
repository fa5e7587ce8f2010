"""Powers come from permissions, never from ``is_staff`` alone (docs/security.md, "Who may
revoke a login session"): revoking another user's login session needs
``accounts.manage_sessions``, which the group "Moderators" holds (a migration creates both)."""

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import LoginSession

pytestmark = pytest.mark.django_db


def delete(path: str, access: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.delete(path)


def me(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/me/").status_code


def test_the_migration_gives_moderators_the_permission():
    moderators = Group.objects.get(name="Moderators")
    assert moderators.permissions.filter(
        codename="manage_sessions", content_type__app_label="accounts"
    ).exists()


def test_staff_without_the_permission_gets_403_and_changes_nothing(alice, make_user, login):
    session, pair = login(alice)
    staff = make_user(username="staff", is_staff=True)
    _, staff_pair = login(staff)
    answer = delete(f"/api/auth/sessions/{session.pk}/", staff_pair["access"])
    assert answer.status_code == 403
    assert answer.json()["code"] == "permission_denied"
    assert me(pair["access"]) == 200
    assert LoginSession.objects.get(pk=session.pk).revoked_at is None


def test_a_moderator_revokes_another_users_session(alice, make_user, login):
    session, pair = login(alice)
    moderator = make_user(username="mod")  # not even staff: the group is what counts
    moderator.groups.add(Group.objects.get(name="Moderators"))
    _, mod_pair = login(moderator)
    assert delete(f"/api/auth/sessions/{session.pk}/", mod_pair["access"]).status_code == 204
    assert me(pair["access"]) == 401


def test_the_permission_given_directly_works_too(alice, make_user, login):
    session, pair = login(alice)
    user = make_user(username="ops")
    user.user_permissions.add(Permission.objects.get(codename="manage_sessions"))
    _, ops_pair = login(user)
    assert delete(f"/api/auth/sessions/{session.pk}/", ops_pair["access"]).status_code == 204


def test_a_superuser_has_every_power(alice, make_user, login):
    session, _ = login(alice)
    root = make_user(username="root", is_staff=True, is_superuser=True)
    _, root_pair = login(root)
    assert delete(f"/api/auth/sessions/{session.pk}/", root_pair["access"]).status_code == 204


def admin_browser(user: Any) -> Client:
    browser = Client()
    browser.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return browser


def revoke_in_admin(browser: Client, session: LoginSession) -> Any:
    return browser.post(
        "/admin/accounts/loginsession/",
        {"action": "revoke", "_selected_action": [str(session.pk)]},
        follow=True,
    )


def test_the_admin_revoke_action_needs_the_permission(alice, make_user, login):
    session, pair = login(alice)
    staff = make_user(username="viewer", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_loginsession"))
    browser = admin_browser(staff)
    listing = browser.get("/admin/accounts/loginsession/")
    assert listing.status_code == 200
    assert 'value="revoke"' not in listing.content.decode()  # the action is not offered
    revoke_in_admin(browser, session)
    assert LoginSession.objects.get(pk=session.pk).revoked_at is None
    assert me(pair["access"]) == 200

    staff.groups.add(Group.objects.get(name="Moderators"))
    browser = admin_browser(staff)
    assert 'value="revoke"' in browser.get("/admin/accounts/loginsession/").content.decode()
    revoke_in_admin(browser, session)
    assert LoginSession.objects.get(pk=session.pk).revoked_at is not None
    assert me(pair["access"]) == 401
