"""Rooms, memberships and messages now belong to the chat app (``chat.0001_initial``).

State only: the tables keep their names and rows.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0002_chat"),
        ("chat", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(model_name="room", name="members"),
                migrations.DeleteModel(name="Membership"),
                migrations.DeleteModel(name="Message"),
                migrations.DeleteModel(name="Room"),
            ],
        ),
    ]
