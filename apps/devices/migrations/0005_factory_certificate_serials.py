"""Serial numbers are unique per issuer for the certificates we issue only: a registered CA's
factory certificate may be recorded on several devices (a cloned certificate), so that the
certificate audit can report it as shared instead of the second enrollment failing."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0004_uplink_messages'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='devicecertificate',
            name='devices_cert_serial_per_issuer',
        ),
        migrations.AddConstraint(
            model_name='devicecertificate',
            constraint=models.UniqueConstraint(condition=models.Q(('kind', 'operational')), fields=('issuer', 'serial_number'), name='devices_cert_serial_per_issuer'),
        ),
    ]
