"""``/api/`` routes of chat rooms, their members and messages (docs/protocol.md)."""

from django.urls import path

from . import api, search

urlpatterns = [
    path("rooms/", api.RoomListView.as_view(), name="rooms"),
    path("rooms/<int:room_id>/", api.RoomDetailView.as_view(), name="room"),
    path("rooms/<int:room_id>/members/", api.RoomMembersView.as_view(), name="room-members"),
    path(
        "rooms/<int:room_id>/members/<int:user_id>/",
        api.RoomMemberView.as_view(),
        name="room-member",
    ),
    path("rooms/<int:room_id>/messages/", api.RoomMessagesView.as_view(), name="room-messages"),
    path(
        "rooms/<int:room_id>/messages/<int:message_id>/",
        api.RoomMessageView.as_view(),
        name="room-message",
    ),
    path(
        "rooms/<int:room_id>/messages/<int:message_id>/reactions/",
        api.MessageReactionsView.as_view(),
        name="message-reactions",
    ),
    path("search/messages/", search.MessageSearchView.as_view(), name="search-messages"),
]
