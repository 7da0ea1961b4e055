"""The channel form's fields: served models and the model mapping instead of raw JSON,
the write-only API keys, and the header and parameter overrides.

Served models are a text box, one name per line; the mapping is rows of "requested →
upstream name"; the keys a text box, one per line, never shown again. The overrides are
JSON objects, parsed here with every hostile input (too long, too deep, not an object,
NaN) turned into a form error. Each is checked here, with errors that say what is wrong
and why (never repeating a key).
"""

import json
import math
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.inputs import json_depth_exceeds, storable_text_problem

from .overrides import (
    MAX_OVERRIDES_CHARS,
    MAX_PARAMETER_DEPTH,
)

# As long as a catalog model's name may be (models_catalog.models.CatalogModel.name).
MAX_MODEL_NAME_LENGTH = 128
# Characters of JSON or a list typed into one line: never part of a model name.
_NOT_IN_A_NAME = set("\"'[]{},")
# Empty rows the mapping shows below the filled ones, to add more.
EMPTY_MAPPING_ROWS = 3


def model_name_problem(name: str) -> str | None:
    """Return why `name` cannot be a model name (a sentence for the admin), or None."""
    if len(name) > MAX_MODEL_NAME_LENGTH:
        return _("“%(name)s…” is longer than %(length)s characters.") % {
            "name": name[:20],
            "length": MAX_MODEL_NAME_LENGTH,
        }
    if any(character.isspace() for character in name) or _NOT_IN_A_NAME & set(name):
        return _(
            "“%(name)s” is not a model name: write one name per line, without spaces, "
            "quotes or commas."
        ) % {"name": name}
    problem = storable_text_problem(name)
    if problem is not None:
        return _("“%(name)s” %(problem)s.") % {"name": name, "problem": problem}
    return None


class ServedModelsField(forms.Field):
    """A list of model names, typed one per line."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 40, "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(name) for name in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            return [str(name) for name in value]
        lines = [line.strip() for line in str(value or "").splitlines()]
        names = [line for line in lines if line]
        errors = [problem for name in names if (problem := model_name_problem(name))]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                errors.append(_("“%(name)s” is listed twice.") % {"name": name})
            seen.add(name)
        if errors:
            raise ValidationError(errors)
        return names


def _values(data: Any, key: str) -> list[str]:
    """Return every value posted under `key` (a QueryDict's list, or a plain dict's)."""
    if hasattr(data, "getlist"):
        return list(data.getlist(key))
    value = data.get(key, [])
    return list(value) if isinstance(value, list | tuple) else [value]


class ModelMappingWidget(forms.Widget):
    """Rows of two text inputs, requested name → upstream name; empty rows to add more."""

    use_fieldset = True

    def format_value(self, value: Any) -> list[tuple[str, str]]:  # type: ignore[override]
        if isinstance(value, Mapping):
            return [(str(key), str(target)) for key, target in value.items()]
        if isinstance(value, list | tuple):
            return [(str(key), str(target)) for key, target in value]
        return []

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[tuple[str, str]]:
        requested = _values(data, f"{name}-requested")
        upstream = _values(data, f"{name}-upstream")
        count = max(len(requested), len(upstream))
        requested += [""] * (count - len(requested))
        upstream += [""] * (count - len(upstream))
        return list(zip(requested, upstream, strict=True))

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return f"{name}-requested" not in data and f"{name}-upstream" not in data

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        rows = self.format_value(value) + [("", "")] * EMPTY_MAPPING_ROWS
        element_id = (attrs or {}).get("id") or f"id_{name}"
        return format_html(
            '<div class="comet-mapping" id="{}"><div class="comet-mapping-head" aria-hidden="true">'
            "<span>{}</span><span></span><span>{}</span></div>{}</div>",
            element_id,
            _("Requested model"),
            _("Name sent upstream"),
            format_html_join(
                "",
                '<div class="comet-mapping-row">'
                '<input type="text" name="{}-requested" value="{}" maxlength="{}" '
                'aria-label="{}" spellcheck="false">'
                '<span class="comet-mapping-arrow" aria-hidden="true">→</span>'
                '<input type="text" name="{}-upstream" value="{}" maxlength="{}" '
                'aria-label="{}" spellcheck="false"></div>',
                (
                    (
                        name,
                        requested,
                        MAX_MODEL_NAME_LENGTH,
                        _("Requested model, row %(row)s") % {"row": number},
                        name,
                        upstream,
                        MAX_MODEL_NAME_LENGTH,
                        _("Name sent upstream, row %(row)s") % {"row": number},
                    )
                    for number, (requested, upstream) in enumerate(rows, start=1)
                ),
            ),
        )


class ModelMappingField(forms.Field):
    """A mapping of requested model names to the names the upstream knows them by."""

    widget = ModelMappingWidget
    default_error_messages = {"invalid": gettext_lazy("Enter the mapping as rows of two names.")}

    def to_python(self, value: Any) -> dict[str, str]:
        if isinstance(value, Mapping):
            return {str(key): str(target) for key, target in value.items()}
        if not isinstance(value, list | tuple):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        mapping: dict[str, str] = {}
        errors: list[str] = []
        for number, (requested, upstream) in enumerate(value, start=1):
            requested, upstream = str(requested).strip(), str(upstream).strip()
            if not requested and not upstream:
                continue
            if not requested or not upstream:
                errors.append(
                    _("Row %(row)s: give both the requested name and the name sent upstream.")
                    % {"row": number}
                )
                continue
            problems = [
                p for p in (model_name_problem(requested), model_name_problem(upstream)) if p
            ]
            if problems:
                errors.extend(
                    _("Row %(row)s: %(problem)s") % {"row": number, "problem": p} for p in problems
                )
                continue
            if requested in mapping:
                errors.append(
                    _("Row %(row)s: “%(name)s” is mapped twice.")
                    % {"row": number, "name": requested}
                )
                continue
            mapping[requested] = upstream
        if errors:
            raise ValidationError(errors)
        return mapping


# Keys a channel may have, and the longest key: far above any vendor's.
MAX_API_KEYS = 100
MAX_API_KEY_LENGTH = 1000


class SecretLinesWidget(forms.Textarea):
    """A text box that is always empty when shown: what was typed in it is never sent back."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            attrs={
                "rows": 3,
                "autocomplete": "off",
                "spellcheck": "false",
                "class": "comet-secret-lines",
                **(attrs or {}),
            }
        )

    def format_value(self, value: Any) -> None:
        return None


class ApiKeysField(forms.Field):
    """A channel's API keys, one per line (empty lines and surrounding spaces ignored)."""

    widget = SecretLinesWidget

    def to_python(self, value: Any) -> list[str]:
        lines = [line.strip() for line in str(value or "").splitlines()]
        errors: list[str] = []
        keys: list[str] = []
        for number, key in enumerate(lines, start=1):
            if not key:
                continue
            if len(key) > MAX_API_KEY_LENGTH:
                errors.append(
                    _("Line %(line)s is longer than %(count)s characters.")
                    % {"line": number, "count": MAX_API_KEY_LENGTH}
                )
            elif not all("!" <= character <= "~" for character in key):
                errors.append(
                    _(
                        "Line %(line)s is not an API key: a key is printable ASCII "
                        "without spaces, one per line."
                    )
                    % {"line": number}
                )
            elif key in keys:
                errors.append(_("Line %(line)s repeats an earlier key.") % {"line": number})
            else:
                keys.append(key)
        if len(keys) > MAX_API_KEYS:
            errors.append(_("At most %(count)s keys.") % {"count": MAX_API_KEYS})
        if errors:
            raise ValidationError(errors)
        return keys


def _refuse_constant(name: str) -> float:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


class JsonObjectField(forms.Field):
    """A JSON object typed in a text box: empty is {}; shown back indented."""

    def __init__(self, *, problems: Any, **kwargs: Any) -> None:
        self.problems = problems
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "comet-json"}),
        )
        super().__init__(required=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return json.dumps(value, indent=2, ensure_ascii=False) if value else ""
        return value

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return dict(value)
        text = str(value or "").strip()
        if not text:
            return {}
        # Counted before parsing: a long text is never parsed.
        if len(text) > MAX_OVERRIDES_CHARS:
            raise ValidationError(
                _("At most %(count)s characters of JSON.") % {"count": MAX_OVERRIDES_CHARS}
            )
        try:
            # NaN, Infinity and numbers too large for a float are not JSON PostgreSQL
            # keeps: refused with malformed JSON, and so is nesting too deep to parse.
            parsed = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
        except (ValueError, RecursionError):
            parsed = _NOT_JSON
        if parsed is _NOT_JSON or json_depth_exceeds(parsed, MAX_PARAMETER_DEPTH):
            raise ValidationError(
                _(
                    'Enter a JSON object, e.g. {"name": "value"} (at most %(count)s levels '
                    "deep, without NaN or Infinity)."
                )
                % {"count": MAX_PARAMETER_DEPTH},
                code="invalid",
            )
        if not isinstance(parsed, dict):
            raise ValidationError(
                _('Enter a JSON object in braces, e.g. {"name": "value"}.'), code="invalid"
            )
        return parsed

    def validate(self, value: Any) -> None:
        super().validate(value)
        problems = self.problems(value)
        if problems:
            raise ValidationError(problems)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != (initial or {})
        except ValidationError:
            return True


_NOT_JSON = object()
