"""The permission ``accounts.manage_sessions`` and the group "Moderators" that holds it.

Another app's migration may create the same group for its own permissions: both use
``get_or_create``, so they run in either order.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def moderators_manage_sessions(apps, schema_editor):
    """Create the permission now (Django creates permissions only after ``migrate``), then give
    it to the group "Moderators", created if missing."""
    app_config = apps.get_app_config("accounts")
    app_config.models_module = True  # create_permissions skips an app without models
    create_permissions(app_config, verbosity=0, apps=apps, using=schema_editor.connection.alias)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.get(
        codename="manage_sessions", content_type__app_label="accounts"
    )
    group, _ = Group.objects.get_or_create(name="Moderators")
    group.permissions.add(permission)


def remove_permission(apps, schema_editor):
    """Take the permission from the group (the group may hold other apps' permissions)."""
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name="Moderators"):
        group.permissions.remove(
            *group.permissions.filter(
                codename="manage_sessions", content_type__app_label="accounts"
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_is_service_db_default"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="loginsession",
            options={
                "ordering": ["-created_at"],
                "permissions": [("manage_sessions", "Can revoke other users' login sessions")],
            },
        ),
        migrations.RunPython(moderators_manage_sessions, remove_permission),
    ]
