"""Django admin for rooms (with their memberships) and messages."""

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from . import services
from .models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    """A room's members, editable on the room's page."""

    model = Membership
    extra = 0
    raw_id_fields = ["user", "last_read_message"]
    readonly_fields = ["joined_at"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms, searchable by name and member; direct rooms show their pair key.

    Removing a membership or deleting a room here goes through the services, so the removed
    members' open sockets leave the room at once, as with the API
    (docs/protocol.md, "Removal").
    """

    list_display = ["id", "name", "kind", "created_by", "created_at", "member_count", "messages"]
    list_filter = ["kind", "created_at"]
    search_fields = ["name", "memberships__user__username"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["direct_key", "created_at", "messages"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .annotate(
                member_total=Count("memberships", distinct=True),
                message_total=Count("messages", distinct=True),
            )
        )

    @admin.display(description="members", ordering="member_total")
    def member_count(self, room: Room) -> int:
        return getattr(room, "member_total", 0)

    @admin.display(description="messages", ordering="message_total")
    def messages(self, room: Room) -> str:
        if room.pk is None:
            return "-"
        url = reverse("admin:chat_message_changelist") + f"?room__id__exact={room.pk}"
        return format_html('<a href="{}">{} message(s)</a>', url, getattr(room, "message_total", 0))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        instances = formset.save(commit=False)
        services.memberships_delete(memberships=list(formset.deleted_objects))
        for membership in instances:
            membership.save()
        formset.save_m2m()

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        services.rooms_delete(rooms=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        services.rooms_delete(rooms=list(queryset))


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages, searchable by body, author and room name."""

    list_display = ["id", "room", "author", "created_at", "short_body"]
    list_filter = ["created_at", "room__kind"]
    search_fields = ["body", "author__username", "room__name"]
    raw_id_fields = ["room", "author"]
    readonly_fields = ["created_at"]
    list_select_related = ["room", "author"]

    @admin.display(description="body")
    def short_body(self, message: Message) -> str:
        return message.body if len(message.body) <= 80 else message.body[:79] + "…"
