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

    Renaming, adding or removing a membership and deleting a room here go through the services,
    so they are changes of the room's feed and the members' open sockets learn of them at once,
    as with the API (docs/protocol.md, "Room feed", "Removal").
    """

    list_display = ["id", "name", "kind", "created_by", "created_at", "member_count", "messages"]
    list_filter = ["kind", "created_at"]
    search_fields = ["name", "memberships__user__username"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["direct_key", "created_at", "messages", "seq"]  # seq: the feed numbers it
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

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        if not (change and "name" in form.changed_data and obj.kind == Room.Kind.GROUP):
            super().save_model(request, obj, form, change)
            return
        name, obj.name = obj.name, form.initial.get("name", "")
        super().save_model(request, obj, form, change)
        services.room_rename_unchecked(room=obj, name=name, actor_id=request.user.pk)
        obj.name = name

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        instances = formset.save(commit=False)
        services.memberships_delete(memberships=list(formset.deleted_objects))
        services.memberships_add(memberships=[m for m in instances if m.pk is None])
        for membership in instances:
            if membership.pk is not None:
                membership.save()
        formset.save_m2m()

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        services.rooms_delete(rooms=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        services.rooms_delete(rooms=list(queryset))


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages, searchable by body, author and room name. Read-only but for deletion, which
    leaves a tombstone and is a change of the room's feed (``services.message_delete``): for
    moderators (``chat.moderate_room``), as over the API."""

    list_display = ["id", "room", "author", "created_at", "short_body", "deleted"]
    list_filter = ["created_at", "room__kind", "deleted"]
    search_fields = ["body", "author__username", "room__name"]
    list_select_related = ["room", "author"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return bool(request.user.has_perm("chat.moderate_room"))

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        if not obj.deleted:
            services.message_delete(room_id=obj.room_id, message_id=obj.pk, user_id=request.user.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        for message in queryset.filter(deleted=False):
            self.delete_model(request, message)

    @admin.display(description="body")
    def short_body(self, message: Message) -> str:
        return message.body if len(message.body) <= 80 else message.body[:79] + "…"
