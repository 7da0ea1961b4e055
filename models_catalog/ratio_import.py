"""Import and export of one-api / new-api style ratio maps.

The file is one JSON object with any of these maps (one-api keeps each as an option):
`ModelRatio`, `CompletionRatio`, `CacheRatio` ({"model": ratio}), `ModelPrice`
({"model": USD per call}) and `GroupRatio` ({"group": ratio}). Numbers are read as
exact decimals. An import is planned (every change, in $/1M, for a preview) and then
applied through `services.price_change_record`, all or nothing.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from accounts.models import User
from core.inputs import storable_text_problem

from .display import MICRO_USD_PER_USD, PriceLine, change_lines
from .models import CatalogModel, PriceChange, PricingGroup
from .services import PriceChangeError, price_change_record, price_change_validate

MODEL_MAPS = {
    "ModelRatio": "model_ratio",
    "CompletionRatio": "completion_ratio",
    "CacheRatio": "cached_ratio",
    "ModelPrice": "price_per_call",
}
GROUP_MAPS = {"GroupRatio": "group_ratio"}
MAX_IMPORT_BYTES = 1024 * 1024


@dataclass
class PlannedChange:
    target: CatalogModel | PricingGroup
    new_prices: dict[str, Any] = field(default_factory=dict)
    lines: list[PriceLine] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.target.name


def _number(value: Any, *, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise PriceChangeError(f"{where}: {value!r} is not a number.")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise PriceChangeError(f"{where}: {value!r} is not a number.") from None
    if not number.is_finite() or number <= 0:
        raise PriceChangeError(f"{where}: must be above 0, not {value}.")
    return number


def _parse(raw: bytes | str) -> dict[str, dict[str, Decimal]]:
    if len(raw) > MAX_IMPORT_BYTES:
        raise PriceChangeError("The file is larger than 1 MB; that is not a ratio map.")
    try:
        data = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, UnicodeDecodeError) as error:
        raise PriceChangeError(f"The file is not valid JSON: {error}.") from None
    except RecursionError:
        raise PriceChangeError("The file is not a ratio map: it is nested too deeply.") from None
    if not isinstance(data, dict) or not data:
        raise PriceChangeError(
            "Expected a JSON object with ModelRatio, CompletionRatio, CacheRatio, ModelPrice "
            "or GroupRatio maps."
        )
    unknown = set(data) - set(MODEL_MAPS) - set(GROUP_MAPS)
    if unknown:
        raise PriceChangeError(f"Unknown map(s): {', '.join(sorted(unknown))}.")
    parsed: dict[str, dict[str, Decimal]] = {}
    for map_name, entries in data.items():
        if isinstance(entries, str):  # one-api stores each map as a JSON string
            try:
                entries = json.loads(entries, parse_float=Decimal, parse_int=Decimal)
            except (ValueError, RecursionError):
                raise PriceChangeError(f"{map_name} is not a JSON object.") from None
        if not isinstance(entries, dict):
            raise PriceChangeError(f"{map_name} must map names to numbers.")
        for name in entries:
            problem = storable_text_problem(name)
            if problem is not None:
                raise PriceChangeError(f"{map_name}: a name {problem}.")
        parsed[map_name] = {
            str(name): _number(value, where=f"{map_name}[{name}]")
            for name, value in entries.items()
        }
    return parsed


def ratio_import_plan(*, raw: bytes | str) -> list[PlannedChange]:
    """Return every change an import would make, or raise PriceChangeError (nothing changes)."""
    parsed = _parse(raw)
    model_names = {name for key in MODEL_MAPS for name in parsed.get(key, {})}
    group_names = set(parsed.get("GroupRatio", {}))
    models = {m.name: m for m in CatalogModel.objects.filter(name__in=model_names)}
    groups = {g.name: g for g in PricingGroup.objects.filter(name__in=group_names)}
    missing = sorted(model_names - set(models))
    if missing:
        raise PriceChangeError(f"Unknown model(s): {', '.join(missing[:10])}. Nothing was changed.")
    missing = sorted(group_names - set(groups))
    if missing:
        raise PriceChangeError(f"Unknown group(s): {', '.join(missing[:10])}. Nothing was changed.")
    plans: dict[tuple[str, str], PlannedChange] = {}
    for map_name, field_name in {**MODEL_MAPS, **GROUP_MAPS}.items():
        for name, value in parsed.get(map_name, {}).items():
            target: CatalogModel | PricingGroup = (
                groups[name] if map_name in GROUP_MAPS else models[name]
            )
            plan = plans.setdefault(
                ("group" if map_name in GROUP_MAPS else "model", name), PlannedChange(target)
            )
            if field_name == "price_per_call":
                micro = value * MICRO_USD_PER_USD
                if micro != micro.to_integral_value():
                    raise PriceChangeError(f"ModelPrice[{name}]: at most 6 decimals of a dollar.")
                plan.new_prices[field_name] = int(micro)
            else:
                plan.new_prices[field_name] = value
    planned = []
    for plan in plans.values():
        try:
            state = price_change_validate(target=plan.target, new_prices=plan.new_prices)
        except PriceChangeError as error:
            raise PriceChangeError(f"{error} Nothing was changed.") from None
        current = {key: getattr(plan.target, key) for key in state}
        if state == current:
            continue
        preview = PriceChange(
            catalog_model=plan.target if isinstance(plan.target, CatalogModel) else None,
            pricing_group=plan.target if isinstance(plan.target, PricingGroup) else None,
        )
        for key in state:
            setattr(preview, f"old_{key}", current[key])
            setattr(preview, f"new_{key}", state[key])
        plan.lines = change_lines(preview)
        planned.append(plan)
    return sorted(planned, key=lambda plan: (isinstance(plan.target, PricingGroup), plan.name))


@transaction.atomic
def ratio_import_apply(
    *, raw: bytes | str, reason: str, changed_by: User, effective_at: datetime | None = None
) -> list[PriceChange]:
    """Apply an import through the one price-change service, all or nothing."""
    changes = []
    for plan in ratio_import_plan(raw=raw):
        change = price_change_record(
            target=plan.target,
            new_prices=plan.new_prices,
            reason=reason,
            changed_by=changed_by,
            source=PriceChange.Source.IMPORT,
            effective_at=effective_at,
        )
        if change is not None:
            changes.append(change)
    return changes


def ratio_export() -> dict[str, dict[str, float]]:
    """Return the catalog's ratio maps in one-api's format."""
    # float() of a 12-digit decimal prints back the same digits: the export is exact.
    maps: dict[str, dict[str, float]] = {key: {} for key in [*MODEL_MAPS, *GROUP_MAPS]}
    for model in CatalogModel.objects.order_by("name"):
        if model.model_ratio is not None:
            maps["ModelRatio"][model.name] = float(model.model_ratio)
            maps["CompletionRatio"][model.name] = float(model.completion_ratio)
            if model.cached_ratio is not None:
                maps["CacheRatio"][model.name] = float(model.cached_ratio)
        if model.price_per_call is not None:
            maps["ModelPrice"][model.name] = float(
                Decimal(model.price_per_call) / MICRO_USD_PER_USD
            )
    for group in PricingGroup.objects.order_by("name"):
        maps["GroupRatio"][group.name] = float(group.group_ratio)
    return maps
