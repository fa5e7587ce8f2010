"""``/api/`` routes of notifications and chat rooms (CONTRACT §2)."""

from django.urls import path

from . import api

urlpatterns = [
    path("notifications/", api.NotificationListView.as_view(), name="notifications"),
    path(
        "notifications/read-all/",
        api.NotificationReadAllView.as_view(),
        name="notifications-read-all",
    ),
    path(
        "notifications/unread-count/",
        api.UnreadCountView.as_view(),
        name="notifications-unread-count",
    ),
    path(
        "notifications/<int:notification_id>/read/",
        api.NotificationReadView.as_view(),
        name="notification-read",
    ),
    path("rooms/", api.RoomListView.as_view(), name="rooms"),
    path("rooms/<int:room_id>/", api.RoomDetailView.as_view(), name="room"),
    path("rooms/<int:room_id>/members/", api.RoomMembersView.as_view(), name="room-members"),
    path(
        "rooms/<int:room_id>/members/<int:user_id>/",
        api.RoomMemberView.as_view(),
        name="room-member",
    ),
    path("rooms/<int:room_id>/messages/", api.RoomMessagesView.as_view(), name="room-messages"),
]
