"""Chat's models, moved from the notifications app: their tables and rows stay where they are.

The state operations give the chat app the models that ``notifications.0002_chat`` created
(same tables, named by ``db_table``); ``notifications.0003_chat_moved`` removes them from the
notifications app's state. The database is not touched, except that the content types (and so
the permissions granted on them) follow the models to their new app label.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ["room", "membership", "message"]


def content_types_to_chat(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="notifications", model__in=MOVED).update(
        app_label="chat"
    )


def content_types_to_notifications(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="chat", model__in=MOVED).update(
        app_label="notifications"
    )


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("notifications", "0002_chat"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Message',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('body', models.TextField(max_length=4000)),
                        ('client_id', models.UUIDField()),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('author', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='messages', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'ordering': ['-pk'],
                        'db_table': 'notifications_message',
                    },
                ),
                migrations.CreateModel(
                    name='Membership',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(choices=[('owner', 'owner'), ('member', 'member')], default='member', max_length=8)),
                        ('joined_at', models.DateTimeField(auto_now_add=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
                        ('last_read_message', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='chat.message')),
                    ],
                    options={
                        'ordering': ['room', 'joined_at', 'pk'],
                        'db_table': 'notifications_membership',
                    },
                ),
                migrations.CreateModel(
                    name='Room',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(blank=True, default='', max_length=100)),
                        ('kind', models.CharField(choices=[('group', 'group'), ('direct', 'direct')], default='group', max_length=8)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('direct_key', models.CharField(blank=True, editable=False, max_length=64, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='created_rooms', to=settings.AUTH_USER_MODEL)),
                        ('members', models.ManyToManyField(related_name='rooms', through='chat.Membership', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'ordering': ['-pk'],
                        'db_table': 'notifications_room',
                    },
                ),
                migrations.AddField(
                    model_name='message',
                    name='room',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='chat.room'),
                ),
                migrations.AddField(
                    model_name='membership',
                    name='room',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='chat.room'),
                ),
                migrations.AddConstraint(
                    model_name='room',
                    constraint=models.UniqueConstraint(condition=models.Q(('direct_key__isnull', False)), fields=('direct_key',), name='room_direct_pair_unique'),
                ),
                migrations.AddIndex(
                    model_name='message',
                    index=models.Index(fields=['room', 'id'], name='message_room_id_idx'),
                ),
                migrations.AddConstraint(
                    model_name='message',
                    constraint=models.UniqueConstraint(fields=('author', 'client_id'), name='message_author_client_id_unique'),
                ),
                migrations.AddConstraint(
                    model_name='membership',
                    constraint=models.UniqueConstraint(fields=('room', 'user'), name='membership_room_user_unique'),
                ),
            ],
        ),
        migrations.RunPython(content_types_to_chat, content_types_to_notifications),
    ]
