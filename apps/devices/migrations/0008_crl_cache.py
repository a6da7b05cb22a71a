"""Each CA keeps what its last CRL lists and when it needs signing again, so that the broker's
CRL bundle re-signs only the CAs whose revocations changed (``pki.revocation.crl_bundle``).
Existing CRLs have neither: they are re-signed once, at the next bundle."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0007_wellness_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='certificateauthority',
            name='crl_revocations',
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name='certificateauthority',
            name='crl_refresh_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
