"""What /imagine's ``model`` and ``lora`` options offer while a member types (Discord's
autocomplete): the models this guild allows and this channel may use, and the LoRAs that fit
the chosen model and the guild allows, as :class:`~bot.guild_limits.EffectiveLimits` (what
admission checks the request itself against) says. These only save a member from typing a
name they would be refused.

Discord shows at most 25 choices, each name and value 1 to 100 characters.
"""

from __future__ import annotations

from discord import app_commands

from bot.guild_limits import EffectiveLimits
from generation.catalog import Catalog, ModelEntry

MAX_CHOICES = 25
MAX_CHOICE_CHARS = 100


def chosen_model(catalog: Catalog, typed: object) -> ModelEntry:
    """The model named in the ``model`` option so far, else the default one."""
    name = typed.strip() if isinstance(typed, str) else ""
    for entry in catalog.models:
        if entry.name == name:
            return entry
    return catalog.model(None)


def _label(text: str) -> str:
    return text if len(text) <= MAX_CHOICE_CHARS else text[: MAX_CHOICE_CHARS - 1] + "…"


def model_choices(
    here: EffectiveLimits, catalog: Catalog, channel_nsfw: bool, current: str
) -> list[app_commands.Choice[str]]:
    """The models here whose name holds what was typed, the default first."""
    typed = current.strip().lower()
    entries = sorted(
        (entry for entry in here.models(channel_nsfw) if typed in entry.name),
        key=lambda entry: (entry.name != catalog.default_model, entry.name),
    )
    choices = []
    for entry in entries[:MAX_CHOICES]:
        about = entry.description or entry.family.value.upper()
        default = " (default)" if entry.name == catalog.default_model else ""
        choices.append(
            app_commands.Choice(name=_label(f"{entry.name}{default} · {about}"), value=entry.name)
        )
    return choices


def lora_choices(
    here: EffectiveLimits, model: ModelEntry, current: str
) -> list[app_commands.Choice[str]]:
    """Completions of the entry being typed in ``"outline:0.8, stripes"``: each LoRA here that
    fits ``model``, holds what is typed and is not listed yet, after the entries before it. An
    entry with a weight is offered as typed (its LoRA is named already)."""
    before, _, typing = current.rpartition(",")
    prefix = f"{before.strip()}, " if before.strip() else ""
    typing = typing.strip()
    if ":" in typing:  # a weight is being typed: keep the text as it is
        text = current.strip()
        return [app_commands.Choice(name=text, value=text)] if len(text) <= MAX_CHOICE_CHARS else []
    listed = {part.split(":", 1)[0].strip() for part in before.split(",")}
    choices = []
    for lora in here.loras(model):
        if lora.name in listed or typing.lower() not in lora.name.lower():
            continue
        value = prefix + lora.name
        if len(value) <= MAX_CHOICE_CHARS:
            choices.append(app_commands.Choice(name=value, value=value))
    return choices[:MAX_CHOICES]
