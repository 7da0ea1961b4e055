from django.db import migrations


def create_default_group(apps, schema_editor):
    PricingGroup = apps.get_model("models_catalog", "PricingGroup")
    if not PricingGroup.objects.filter(is_default=True).exists():
        PricingGroup.objects.create(
            name="default", display_name="Default", group_ratio=1, is_default=True
        )


class Migration(migrations.Migration):
    dependencies = [("models_catalog", "0001_pricing_group")]

    operations = [migrations.RunPython(create_default_group, migrations.RunPython.noop)]
