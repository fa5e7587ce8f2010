"""Create the bench's users, login sessions, tokens and rooms in its private database, in bulk.

``python -m bench.seed N_USERS OUT.json [HUGE]`` with ``DJANGO_SETTINGS_MODULE`` and
``DATABASE_URL`` set. One password hash for everyone (hashing is slow on purpose),
``bulk_create`` for the rest, so 11 000 users take a few seconds. Writes ``{"service": {...},
"users": [{id, token}], "big_room": id, "rooms": [id], "solo_rooms": [id], "huge_room": id}``.
User ``i`` of ``users`` (``i < POOL``) is a member of the big room, of small room
``i // ROOM_SIZE`` and of ``solo_rooms[i]``, a room of one; users ``POOL .. POOL + HUGE - 1``
are the members of the huge room (``HUGE`` must fit in ``N_USERS - POOL``).
"""

import json
import sys

import django

POOL = 1000  # sockets kept open per server for W2, W3, W5
ROOM_SIZE = 10  # W5: 100 rooms x 10 members


def main(n_users: int, out: str, huge: int = 0) -> None:
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
        solos = Room.objects.bulk_create(
            [Room(name=f"solo{i}", created_by=u) for i, u in enumerate(users[:POOL])]
        )
        huge_room = Room.objects.create(name="huge", created_by=users[POOL])
        Membership.objects.bulk_create(
            [Membership(room=big, user=u) for u in users[:POOL]]
            + [Membership(room=rooms[i // ROOM_SIZE], user=u) for i, u in enumerate(users[:POOL])]
            + [Membership(room=solos[i], user=u) for i, u in enumerate(users[:POOL])]
            + [Membership(room=huge_room, user=u) for u in users[POOL : POOL + huge]],
            batch_size=1000,
        )

    # What a real login leaves in the shared cache (accounts.services.login_session_create): the
    # session's state and the user's. The tutorial has no such cache; its middleware queries.
    from django.core.cache import cache

    from accounts.selectors import USER_TTL, session_cache_key, user_cache_key

    everyone = [service, *users]
    for start in range(0, len(everyone), 1000):
        chunk = list(
            zip(everyone[start : start + 1000], sessions[start : start + 1000], strict=True)
        )
        cache.set_many({session_cache_key(s.pk): str(u.pk) for u, s in chunk}, 86_400)
        cache.set_many({user_cache_key(u.pk): (u.username, True) for u, _ in chunk}, USER_TTL)

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
        "solo_rooms": [r.pk for r in solos],
        "huge_room": huge_room.pk,
    }
    with open(out, "w") as file:
        json.dump(data, file)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *(int(a) for a in sys.argv[3:4]))
