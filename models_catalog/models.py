from django.db import models
from django.db.models import Q


class PricingGroup(models.Model):
    """A set of customers who pay the same `group_ratio` on top of model prices.

    Exactly one group is the default: users without a group, and anonymous
    visitors of the pricing page, are priced by it.
    """

    name = models.SlugField(max_length=64, unique=True)
    display_name = models.CharField(max_length=100)
    group_ratio = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="models_catalog_one_default_group",
            ),
            models.CheckConstraint(
                condition=Q(group_ratio__gt=0), name="models_catalog_group_ratio_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name
