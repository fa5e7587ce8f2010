"""Existing rooms join the change feed: their messages get ``seq`` 1, 2, 3, ... in id order per
room, and each room's ``seq`` is its latest. Also the ``chat.moderate_room`` permission and the
"Moderators" group that holds it."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def number_messages(apps, schema_editor):
    quote = schema_editor.connection.ops.quote_name
    message = quote("notifications_message")
    room = quote("notifications_room")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {message} SET seq = numbered.n FROM ("  # noqa: S608
            f"SELECT id, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY id) AS n "
            f"FROM {message}) AS numbered WHERE {message}.id = numbered.id"
        )
        cursor.execute(
            f"UPDATE {room} SET seq = COALESCE((SELECT MAX(seq) FROM {message} "  # noqa: S608
            f"WHERE {message}.room_id = {room}.id), 0)"
        )


def moderators_group(apps, schema_editor):
    app_config = apps.get_app_config("chat")
    app_config.models_module = True  # create_permissions skips an app without models
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    permission = apps.get_model("auth", "Permission").objects.get(
        content_type__app_label="chat", codename="moderate_room"
    )
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name="Moderators")
    group.permissions.add(permission)


def no_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Moderators").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0002_feed"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(number_messages, migrations.RunPython.noop),
        migrations.RunPython(moderators_group, no_group),
    ]
