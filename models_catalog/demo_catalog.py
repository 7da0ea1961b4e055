"""A demo catalog: real model names and ratios close to their vendors' list prices.

Ratio 1.0 = $2 per 1M input tokens, so a $2.50 / $10 model has model_ratio 1.25 and
completion_ratio 4. Per-call prices are micro-USD.
"""

from decimal import Decimal as D

from django.db import transaction

from .models import CatalogModel, PriceChange, PricingGroup, Vendor
from .services import price_change_record

VENDORS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "deepseek": "DeepSeek",
    "xai": "xAI",
    "mistral": "Mistral AI",
    "alibaba": "Alibaba Qwen",
    "meta": "Meta",
    "black-forest-labs": "Black Forest Labs",
    "suno": "Suno",
}

CHAT, EMBEDDING, IMAGE, AUDIO, VIDEO, MUSIC = (kind.value for kind in CatalogModel.Kind)

# name, vendor, kind, context window, model ratio, completion ratio, cached ratio, per call
MODELS: list[tuple[str, str, str, int | None, D | None, D, D | None, int | None]] = [
    ("gpt-4o", "openai", CHAT, 128_000, D("1.25"), D(4), D("0.5"), None),
    ("gpt-4o-mini", "openai", CHAT, 128_000, D("0.075"), D(4), D("0.5"), None),
    ("gpt-4.1", "openai", CHAT, 1_047_576, D(1), D(4), D("0.25"), None),
    ("gpt-4.1-mini", "openai", CHAT, 1_047_576, D("0.2"), D(4), D("0.25"), None),
    ("gpt-4.1-nano", "openai", CHAT, 1_047_576, D("0.05"), D(4), D("0.25"), None),
    ("o1", "openai", CHAT, 200_000, D("7.5"), D(4), D("0.5"), None),
    ("o3", "openai", CHAT, 200_000, D(1), D(4), D("0.25"), None),
    ("o4-mini", "openai", CHAT, 200_000, D("0.55"), D(4), D("0.25"), None),
    ("text-embedding-3-small", "openai", EMBEDDING, 8_191, D("0.01"), D(1), None, None),
    ("text-embedding-3-large", "openai", EMBEDDING, 8_191, D("0.065"), D(1), None, None),
    ("tts-1", "openai", AUDIO, None, None, D(1), None, None),
    ("whisper-1", "openai", AUDIO, None, None, D(1), None, None),
    ("dall-e-3", "openai", IMAGE, None, None, D(1), None, None),
    ("gpt-image-1", "openai", IMAGE, None, None, D(1), None, None),
    ("sora-2", "openai", VIDEO, None, None, D(1), None, 400_000),
    ("claude-3-5-haiku-20241022", "anthropic", CHAT, 200_000, D("0.4"), D(5), D("0.1"), None),
    ("claude-3-7-sonnet-20250219", "anthropic", CHAT, 200_000, D("1.5"), D(5), D("0.1"), None),
    ("claude-sonnet-4-20250514", "anthropic", CHAT, 200_000, D("1.5"), D(5), D("0.1"), None),
    ("claude-opus-4-20250514", "anthropic", CHAT, 200_000, D("7.5"), D(5), D("0.1"), None),
    ("gemini-2.5-pro", "google", CHAT, 1_048_576, D("0.625"), D(8), D("0.25"), None),
    ("gemini-2.5-flash", "google", CHAT, 1_048_576, D("0.15"), D("8.333333"), D("0.25"), None),
    ("gemini-2.0-flash", "google", CHAT, 1_048_576, D("0.05"), D(4), D("0.25"), None),
    ("gemini-embedding-001", "google", EMBEDDING, 2_048, D("0.075"), D(1), None, None),
    ("veo-3.0-generate-preview", "google", VIDEO, None, None, D(1), None, 1_200_000),
    ("deepseek-chat", "deepseek", CHAT, 128_000, D("0.135"), D("4.074074"), D("0.259259"), None),
    (
        "deepseek-reasoner",
        "deepseek",
        CHAT,
        128_000,
        D("0.275"),
        D("3.981818"),
        D("0.254545"),
        None,
    ),
    ("grok-3", "xai", CHAT, 131_072, D("1.5"), D(5), D("0.25"), None),
    ("grok-3-mini", "xai", CHAT, 131_072, D("0.15"), D("1.666667"), D("0.25"), None),
    ("mistral-large-latest", "mistral", CHAT, 128_000, D(1), D(3), None, None),
    ("mistral-small-latest", "mistral", CHAT, 128_000, D("0.05"), D(3), None, None),
    ("codestral-latest", "mistral", CHAT, 256_000, D("0.15"), D(3), None, None),
    ("qwen-max", "alibaba", CHAT, 32_768, D("0.8"), D(4), None, None),
    ("qwen-plus", "alibaba", CHAT, 131_072, D("0.2"), D(3), None, None),
    ("llama-3.3-70b-instruct", "meta", CHAT, 131_072, D("0.3"), D("1.333333"), None, None),
    # One image a call: priced per call, as its vendor does.
    ("flux-1.1-pro", "black-forest-labs", IMAGE, None, None, D(1), None, 40_000),
    ("suno-v4", "suno", MUSIC, None, None, D(1), None, 50_000),
]

# Models priced per unit (`models_catalog.pricing`), at their vendors' list prices:
# micro-USD per image by size and quality, per 1M characters spoken, per minute heard.
UNIT_PRICES: dict[str, dict[str, object]] = {
    "tts-1": {"price_per_million_characters": 15_000_000},
    "whisper-1": {"price_per_minute": 6_000},
    "dall-e-3": {
        "price_per_image": {
            "*": 40_000,
            "1024x1792": 80_000,
            "1792x1024": 80_000,
            "hd": 80_000,
            "hd 1024x1792": 120_000,
            "hd 1792x1024": 120_000,
        }
    },
    "gpt-image-1": {
        "price_per_image": {"*": 42_000, "low": 11_000, "medium": 42_000, "high": 167_000}
    },
}

# The prices an earlier demo catalog gave the models it now prices per unit, exactly as
# it wrote them (before 413b61f: tts-1 per token, the others per call). Such a model was
# made by `load_demo_catalog` and never repriced since: tts-1 is then refused at
# /v1/audio/speech (nothing there counts tokens), and the others are not billed by their
# unit. A reload brings each to its `UNIT_PRICES`; any other price is an admin's, kept.
SUPERSEDED_PRICES: dict[str, dict[str, object]] = {
    "tts-1": {"model_ratio": D("7.5")},
    "whisper-1": {"price_per_call": 6_000},
    "dall-e-3": {"price_per_call": 40_000},
    "gpt-image-1": {"price_per_call": 42_000},
}
# The rest of a superseded price: the defaults the earlier catalog left.
SUPERSEDED_DEFAULTS: dict[str, object] = {
    "model_ratio": None,
    "completion_ratio": D(1),
    "cached_ratio": None,
    "price_per_call": None,
    "price_per_image": None,
    "price_per_million_characters": None,
    "price_per_minute": None,
}
SUPERSEDED_REASON = (
    "The demo catalog now prices %(model)s per %(unit)s, as its vendor does, instead of "
    "the earlier demo catalog's price."
)
SUPERSEDED_UNIT_NAMES = {
    "price_per_image": "image",
    "price_per_million_characters": "1M characters",
    "price_per_minute": "minute",
}

# Completion tokens a hold assumes when a request sets no max_tokens: a long answer, and
# room for the reasoning tokens that thinking models bill as completion. Chat models not
# listed take 4,096; other kinds none (the relay's default applies).
COMPLETION_RESERVES = {
    "o1": 16_384,
    "o3": 16_384,
    "o4-mini": 16_384,
    "gemini-2.5-pro": 8_192,
    "gemini-2.5-flash": 8_192,
    "deepseek-reasoner": 8_192,
    "claude-opus-4-20250514": 8_192,
    "claude-sonnet-4-20250514": 8_192,
}
CHAT_COMPLETION_RESERVE = 4_096

GROUPS = [("enterprise", "Enterprise", D("0.9"), "Contracted customers: 10% off every model.")]


def superseded_prices_update() -> int:
    """Bring each demo model still at its superseded price (`SUPERSEDED_PRICES`) to its
    unit price, through the price-change service (recorded, announced, emailed as any
    change, its source the demo catalog); return how many changed.

    Only a price exactly as the earlier catalog wrote it changes: one an admin set, even
    back to the same unit, differs in a field or has a price history of its own.
    """
    changed = 0
    for name, superseded in SUPERSEDED_PRICES.items():
        model = CatalogModel.objects.filter(name=name).first()
        if model is None or model.price_changes.exists():
            continue
        old = {**SUPERSEDED_DEFAULTS, **superseded}
        if any(getattr(model, field) != value for field, value in old.items()):
            continue
        unit_prices = UNIT_PRICES[name]
        [unit_field] = unit_prices
        new_prices = dict.fromkeys(superseded) | unit_prices
        change = price_change_record(
            target=model,
            new_prices=new_prices,
            reason=SUPERSEDED_REASON % {"model": name, "unit": SUPERSEDED_UNIT_NAMES[unit_field]},
            changed_by=None,
            source=PriceChange.Source.CATALOG,
        )
        changed += change is not None
    return changed


@transaction.atomic
def load_demo_catalog() -> tuple[int, int]:
    """Create the demo vendors, models and groups that are missing; return (models, groups).

    Models that already exist keep their prices: an admin's edits survive a reload. The
    one exception is a price an earlier demo catalog wrote and nobody changed since,
    which goes to the model's unit price (`superseded_prices_update`).
    """
    vendors = {}
    for name, display_name in VENDORS.items():
        vendors[name], _ = Vendor.objects.get_or_create(
            name=name, defaults={"display_name": display_name}
        )
    created_models = 0
    for name, vendor, kind, context, ratio, completion, cached, per_call in MODELS:
        _, created = CatalogModel.objects.get_or_create(
            name=name,
            defaults={
                "vendor": vendors[vendor],
                "kind": kind,
                "context_window": context,
                "completion_reserve": COMPLETION_RESERVES.get(
                    name, CHAT_COMPLETION_RESERVE if kind == CHAT else None
                ),
                "model_ratio": ratio,
                "completion_ratio": completion,
                "cached_ratio": cached,
                "price_per_call": per_call,
                **UNIT_PRICES.get(name, {}),
            },
        )
        created_models += created
    superseded_prices_update()
    # The migration made it; a test database flushed since then has lost it.
    if not PricingGroup.objects.filter(is_default=True).exists():
        PricingGroup.objects.create(
            name="default", display_name="Default", group_ratio=1, is_default=True
        )
    created_groups = 0
    for name, display_name, ratio, description in GROUPS:
        _, created = PricingGroup.objects.get_or_create(
            name=name,
            defaults={
                "display_name": display_name,
                "group_ratio": ratio,
                "description": description,
            },
        )
        created_groups += created
    return created_models, created_groups
