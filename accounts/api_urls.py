"""``/api/`` routes of accounts (docs/protocol.md, "HTTP API")."""

from django.urls import path

from . import api

urlpatterns = [
    path("auth/token/", api.TokenObtainView.as_view(), name="token"),
    path("auth/token/refresh/", api.TokenRefreshView.as_view(), name="token-refresh"),
    path("auth/logout/", api.LogoutView.as_view(), name="api-logout"),
    path("auth/ws-ticket/", api.WsTicketView.as_view(), name="ws-ticket"),
    path("auth/sessions/", api.SessionListView.as_view(), name="sessions"),
    path("auth/sessions/<uuid:session_id>/", api.SessionDetailView.as_view(), name="session"),
    path("me/", api.MeView.as_view(), name="me"),
    path("users/", api.UserSearchView.as_view(), name="users"),
]
