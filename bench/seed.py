"""Create the bench's users, login sessions, tokens and rooms in its private database, in bulk.

``python -m bench.seed N_USERS OUT.json`` with ``DJANGO_SETTINGS_MODULE`` and ``DATABASE_URL``
set. One password hash for everyone (hashing is slow on purpose), ``bulk_create`` for the rest,
so 6000 users take about a second. Writes ``{"service": {...}, "users": [{id, token}],
"big_room": id, "rooms": [id]}``; user ``i`` of ``users`` is member ``i`` of the big room (for
``i < POOL``) and of small room ``i // ROOM_SIZE``.
"""

import json
import sys

import django

POOL = 1000  # sockets kept open per server for W2, W3, W5
ROOM_SIZE = 10  # W5: 100 rooms x 10 members


def main(n_users: int, out: str) -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Permission
    from django.db import transaction
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import LoginSession
    from accounts.tokens import SESSION_CLAIM
    from chat.models import Membership, Room

    user_model = get_user_model()
    password = make_password("bench-password")
    with transaction.atomic():
        users = user_model.objects.bulk_create(
            [user_model(username=f"bench{i}", password=password) for i in range(n_users + 1)],
            batch_size=1000,
        )
        service, users = users[0], users[1:]
        service.user_permissions.add(
            Permission.objects.get(
                codename="send_notification", content_type__app_label="notifications"
            )
        )
        sessions = LoginSession.objects.bulk_create(
            [LoginSession(user=u, kind=LoginSession.Kind.API) for u in [service, *users]],
            batch_size=1000,
        )
        big = Room.objects.create(name="big", created_by=users[0])
        rooms = Room.objects.bulk_create(
            [Room(name=f"r{i}", created_by=users[i * ROOM_SIZE]) for i in range(POOL // ROOM_SIZE)]
        )
        Membership.objects.bulk_create(
            [Membership(room=big, user=u) for u in users[:POOL]]
            + [Membership(room=rooms[i // ROOM_SIZE], user=u) for i, u in enumerate(users[:POOL])],
            batch_size=1000,
        )

    def token(user: object, session: LoginSession) -> str:
        access = AccessToken.for_user(user)
        access[SESSION_CLAIM] = str(session.pk)
        return str(access)

    data = {
        "service": {"id": service.pk, "token": token(service, sessions[0])},
        "users": [
            {"id": u.pk, "token": token(u, s)} for u, s in zip(users, sessions[1:], strict=True)
        ],
        "big_room": big.pk,
        "rooms": [r.pk for r in rooms],
    }
    with open(out, "w") as file:
        json.dump(data, file)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
