"""The listing sort key beside the grant: each guardian grant row on a device group carries the
group's name (``object_name``), kept by triggers, with an index per grantee
``(grantee, permission, object_name, content_object)``. A page of groups by name then takes its
first grants from the index instead of reading and sorting every shared group
(``apps.core.scoping.GrantedIds``, docs/performance.md)."""

from __future__ import annotations

from django.db import migrations, models

# A grant row's object_name is its group's name whatever the writer sends (guardian's
# assign_perm, bulk_create, a later save() of a stale instance). FOR SHARE: a rename committing
# meanwhile either waits for this grant's transaction (and its own UPDATE then sees the grant)
# or this SELECT waits for the rename and reads the new name; never a stale copy. The group's
# INSERT trigger covers a grant written before its group in the same transaction.
FORWARD = """
CREATE OR REPLACE FUNCTION devices_group_grant_object_name() RETURNS trigger AS $$
BEGIN
    NEW.object_name := COALESCE(
        (SELECT name FROM devices_devicegroup WHERE id = NEW.content_object_id FOR SHARE), '');
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION devices_group_name_to_grants() RETURNS trigger AS $$
BEGIN
    UPDATE devices_devicegroupuserobjectpermission SET object_name = NEW.name
        WHERE content_object_id = NEW.id;
    UPDATE devices_devicegroupgroupobjectpermission SET object_name = NEW.name
        WHERE content_object_id = NEW.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER devices_devicegroupuserobjectpermission_object_name
    BEFORE INSERT OR UPDATE ON devices_devicegroupuserobjectpermission
    FOR EACH ROW EXECUTE FUNCTION devices_group_grant_object_name();
CREATE TRIGGER devices_devicegroupgroupobjectpermission_object_name
    BEFORE INSERT OR UPDATE ON devices_devicegroupgroupobjectpermission
    FOR EACH ROW EXECUTE FUNCTION devices_group_grant_object_name();
CREATE TRIGGER devices_devicegroup_renamed
    AFTER UPDATE OF name ON devices_devicegroup
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION devices_group_name_to_grants();
CREATE TRIGGER devices_devicegroup_created
    AFTER INSERT ON devices_devicegroup
    FOR EACH ROW EXECUTE FUNCTION devices_group_name_to_grants();

-- the grants that exist already
UPDATE devices_devicegroupuserobjectpermission SET object_name = object_name;
UPDATE devices_devicegroupgroupobjectpermission SET object_name = object_name;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS devices_devicegroup_created ON devices_devicegroup;
DROP TRIGGER IF EXISTS devices_devicegroup_renamed ON devices_devicegroup;
DROP TRIGGER IF EXISTS devices_devicegroupgroupobjectpermission_object_name
    ON devices_devicegroupgroupobjectpermission;
DROP TRIGGER IF EXISTS devices_devicegroupuserobjectpermission_object_name
    ON devices_devicegroupuserobjectpermission;
DROP FUNCTION IF EXISTS devices_group_name_to_grants();
DROP FUNCTION IF EXISTS devices_group_grant_object_name();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("devices", "0002_credentials_enrollment"),
    ]

    operations = [
        migrations.AddField(
            model_name="devicegroupgroupobjectpermission",
            name="object_name",
            field=models.CharField(default="", editable=False, max_length=200),
        ),
        migrations.AddField(
            model_name="devicegroupuserobjectpermission",
            name="object_name",
            field=models.CharField(default="", editable=False, max_length=200),
        ),
        migrations.AddIndex(
            model_name="devicegroupgroupobjectpermission",
            index=models.Index(
                fields=["group", "permission", "object_name", "content_object"],
                name="devices_group_org_listing",
            ),
        ),
        migrations.AddIndex(
            model_name="devicegroupuserobjectpermission",
            index=models.Index(
                fields=["user", "permission", "object_name", "content_object"],
                name="devices_group_user_listing",
            ),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
