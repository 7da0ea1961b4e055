"""Admin helpers every app's admin may use: micro-USD fields shown in dollars."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.utils.text import capfirst

from core.money import format_usd_exact


def usd_display(model: type[Model], field: str) -> Callable[[Model], str]:
    """Return an admin column or read-only row showing a micro-USD field in dollars, exactly."""

    def display(obj: Model) -> str:
        value = getattr(obj, field)
        return "—" if value is None else format_usd_exact(value)

    display.__name__ = f"{field}_usd"
    # Lazy: the column's title is read in each request's language, not the first one's.
    description = capfirst(getattr(model._meta.get_field(field), "verbose_name", field))
    return admin.display(description=description, ordering=field)(display)


class DollarsAdmin(admin.ModelAdmin):
    """An admin whose micro-USD fields (`money_fields`) read in dollars, never as raw
    integers: in the list's columns and in the read-only rows of the change view."""

    money_fields: tuple[str, ...] = ()

    def _dollars(self, field: Any) -> Any:
        if field not in self.money_fields:
            return field
        displays = self.__dict__.setdefault("_money_displays", {})
        if field not in displays:
            displays[field] = usd_display(self.model, field)
        return displays[field]

    def _swap(self, fields: Any) -> list[Any]:
        swapped: list[Any] = []
        for field in fields:
            shown = self._dollars(field)
            if shown not in swapped:
                swapped.append(shown)
        return swapped

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._swap(super().get_list_display(request))

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*(super().get_exclude(request, obj) or ()), *self.money_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = self._swap(super().get_readonly_fields(request, obj))
        return readonly + [
            self._dollars(field)
            for field in self.money_fields
            if self._dollars(field) not in readonly
        ]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self._swap(super().get_fields(request, obj))
