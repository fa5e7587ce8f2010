"""Request and response shapes of the auth API (docs/protocol.md, "HTTP API")."""

from rest_framework import serializers

from .models import LoginSession


class TokenObtainSerializer(serializers.Serializer):
    """``{username, password}``."""

    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenPairSerializer(serializers.Serializer):
    """``{access, refresh, session_id?}``."""

    access = serializers.CharField()
    refresh = serializers.CharField()
    session_id = serializers.UUIDField(required=False)


class RefreshSerializer(serializers.Serializer):
    """``{refresh}``."""

    refresh = serializers.CharField(max_length=4096)


class LogoutSerializer(serializers.Serializer):
    """``{refresh?}``: without it, the caller's current login session is ended."""

    refresh = serializers.CharField(max_length=4096, required=False)


class WsTicketSerializer(serializers.Serializer):
    """``{ticket, expires_in}`` (seconds)."""

    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()


class LoginSessionSerializer(serializers.ModelSerializer):
    """A login session as its user sees it; ``current`` marks the one making the request."""

    current = serializers.SerializerMethodField()

    class Meta:
        model = LoginSession
        fields = ["id", "kind", "user_agent", "ip", "created_at", "last_seen_at", "current"]

    def get_current(self, obj: LoginSession) -> bool:
        return str(obj.pk) == self.context.get("current_session_id")


class MeSerializer(serializers.Serializer):
    """``{id, username, display_name}``."""

    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField()


class UserSearchQuerySerializer(serializers.Serializer):
    """Query of ``GET /api/users/``: ``q``, words that must each match a username or name."""

    q = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
