"""`sdbot models`: the models, LoRAs and embeddings this bot offers (SDBOT_MODELS_FILE,
SDBOT_LORA_DIR, SDBOT_EMBEDDING_DIR), read as the bot reads them; nothing is loaded."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK

if TYPE_CHECKING:
    from bot.settings import Settings
    from generation.catalog import Catalog, ModelEntry


def register(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list the models, LoRAs and embeddings that requests may name",
        description="Reads the catalog as the bot does (no model is loaded): each model's "
        "family, sizes and defaults, the LoRAs and which models they fit, the embeddings.",
    )
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    models.set_defaults(handler=run_models)


def model_json(catalog: Catalog, entry: ModelEntry) -> dict[str, Any]:
    defaults = entry.defaults
    return {
        "name": entry.name,
        "default": entry.name == catalog.default_model,
        "family": entry.family.value,
        "source": entry.source.spec,
        "sizes": {size.aspect: f"{size.width}x{size.height}" for size in entry.sizes},
        "steps": defaults.steps,
        "cfg": defaults.guidance_scale,
        "scheduler": defaults.scheduler,
        "nsfw_only": entry.nsfw_only,
        "description": entry.description,
        "loras": [lora.name for lora in catalog.loras_for(entry)],
    }


def catalog_json(catalog: Catalog) -> dict[str, Any]:
    return {
        "default_model": catalog.default_model,
        "models": [model_json(catalog, entry) for entry in catalog.models],
        "loras": [
            {
                "name": lora.name,
                "path": str(lora.path),
                "fits": [m.name for m in catalog.models if lora in catalog.loras_for(m)],
            }
            for lora in catalog.loras
        ],
        "embeddings": [
            {"token": embedding.token, "path": str(embedding.path), "dim": embedding.dim}
            for embedding in catalog.embeddings
        ],
    }


def print_catalog(catalog: Catalog) -> None:
    shown = catalog_json(catalog)
    print("models:")
    for model in shown["models"]:
        mark = " (default)" if model["default"] else ""
        nsfw = " · NSFW channels only" if model["nsfw_only"] else ""
        sizes = ", ".join(f"{aspect} {pixels}" for aspect, pixels in model["sizes"].items())
        print(f"  {model['name']}{mark}: {model['family']} · {sizes}{nsfw}")
        print(
            f"    {model['steps']} steps · cfg {model['cfg']:g} · {model['scheduler']} · "
            f"from {model['source']}"
        )
        if model["description"]:
            print(f"    {model['description']}")
    print("LoRAs:" if shown["loras"] else "LoRAs: none")
    for lora in shown["loras"]:
        fits = ", ".join(lora["fits"]) or "no model here (its width fits none)"
        print(f"  {lora['name']}: fits {fits}")
    print("embeddings:" if shown["embeddings"] else "embeddings: none")
    for embedding in shown["embeddings"]:
        width = "" if embedding["dim"] is None else f" ({embedding['dim']} wide)"
        print(f"  {embedding['token']}{width}")


async def run_models(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.imagine import catalog_of

    catalog = catalog_of(settings)
    if args.json:
        print(json.dumps(catalog_json(catalog), indent=2))
    else:
        print_catalog(catalog)
    return EXIT_OK
