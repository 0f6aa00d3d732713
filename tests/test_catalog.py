"""The catalog: models, LoRAs and embeddings read from the operator's files without loading
them, and a request's choice of them checked with a message that names the bad value."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from generation import catalog_files
from generation.catalog import Catalog, Size, check_control, load_catalog
from generation.catalog_files import FAMILY_SIZES, clean_name, family_sizes
from generation.errors import InvalidOption, ModelLoadError
from generation.families import Family
from generation.models import SourceKind
from generation.options import MAX_LORAS, LoraChoice, OptionLimits, RequestedOptions

LIMITS = OptionLimits()


def tensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in shapes.items()}, path)
    return path


# The key names diffusers (PEFT), diffusers' old attention processors and kohya write.
DIFFUSERS_KEY = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"
OLD_DIFFUSERS_KEY = (
    "unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_v_lora.down.weight"
)
OLDER_DIFFUSERS_KEY = (
    "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.lora.down.weight"
)
KOHYA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A LoRA folder and an embedding folder in the layouts the catalog reads."""
    loras, embeddings = tmp_path / "loras", tmp_path / "embeddings"
    loras.mkdir()
    embeddings.mkdir()
    tensors(
        loras / "outline.safetensors", {DIFFUSERS_KEY: (8, 128), "unet.x.lora_B.weight": (64, 8)}
    )
    tensors(loras / "stripes.safetensors", {OLD_DIFFUSERS_KEY: (4, 128)})
    tensors(loras / "dots.safetensors", {OLDER_DIFFUSERS_KEY: (4, 128)})
    tensors(loras / "sd15-style.safetensors", {KOHYA_KEY: (4, 768)})
    tensors(loras / "words.safetensors", {"lora_te_text_model_q.lora_down.weight": (4, 768)})
    (loras / "notes.txt").write_text("not a LoRA")
    tensors(embeddings / "dots.safetensors", {"emb_params": (2, 128)})
    tensors(embeddings / "xl-neg.safetensors", {"clip_l": (2, 768), "clip_g": (2, 1280)})
    tensors(embeddings / "sd15-neg.safetensors", {"<sd15-neg>": (768,)})
    (embeddings / "old.pt").write_bytes(b"PK pickle")
    return loras, embeddings


@pytest.fixture
def catalog(model_dir: Path, files: tuple[Path, Path]) -> Catalog:
    return load_catalog(str(model_dir), lora_dir=files[0], embedding_dir=files[1])


def test_the_embedded_model_alone(model_dir: Path) -> None:
    catalog = load_catalog(str(model_dir))
    entry = catalog.model(None)
    assert catalog.default_model == entry.name == "embedded"  # its sdbot.json's name
    assert entry.source.kind is SourceKind.FOLDER
    assert entry.family is Family.SD1  # one CLIP encoder, convolutional projections
    assert entry.cross_attention_dim == 128  # from unet/config.json
    assert entry.sizes[0] == Size("1:1", 64, 64)
    assert (entry.defaults.steps, entry.defaults.width) == (20, 64)
    assert catalog.loras == ()
    assert catalog.embeddings == ()
    assert pickle.loads(pickle.dumps(catalog)) == catalog  # it travels to the worker


def test_a_model_without_its_own_name_or_sizes(model_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(model_dir, tmp_path / "My Model_v2", ignore=_no_weights)
    (folder / "sdbot.json").unlink()
    entry = load_catalog(str(folder)).model(None)
    assert entry.name == "my-model_v2"
    # The family's sizes at the model's own side (64 px: SD 1.x's 512 scaled by 1/8).
    assert [str(s) for s in entry.sizes] == [
        "64x64 (1:1)", "96x64 (3:2)", "64x96 (2:3)", "112x64 (16:9)", "64x112 (9:16)",
    ]  # fmt: skip
    assert family_sizes(Family.SDXL, None) == FAMILY_SIZES[Family.SDXL]
    assert clean_name("..Ünïcode Model!!") == "unicode-model"
    assert clean_name("---") == "model"


def _no_weights(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name.endswith(".safetensors")]


def test_files_and_their_widths(catalog: Catalog) -> None:
    widths = {lora.name: lora.cross_attention_dim for lora in catalog.loras}
    assert widths == {
        "dots": 128, "outline": 128, "sd15-style": 768, "stripes": 128, "words": None,
    }  # fmt: skip
    dims = {e.token: e.dim for e in catalog.embeddings}
    assert dims == {"dots": 128, "old": None, "sd15-neg": 768, "xl-neg": 2048}
    embedded = catalog.model("embedded")
    assert [lora.name for lora in catalog.loras_for(embedded)] == [
        "dots", "outline", "stripes", "words",
    ]  # fmt: skip
    assert [e.token for e in catalog.embeddings_for(embedded)] == ["dots", "old"]
    assert catalog.embeddings_in("a dots circle", "(sd15-neg:1.2), old-ish") == ("dots", "sd15-neg")
    assert catalog.embeddings_in("dotsy", "dots-2") == ()
    assert pickle.loads(pickle.dumps(catalog)) == catalog


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.safetensors", b"\x05", "broken.safetensors is not a safetensors file"),
        ("two words.safetensors", None, "'two words' cannot be typed in a request"),
    ],
)
def test_bad_lora_files_are_named(
    model_dir: Path, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is None:
        tensors(path, {DIFFUSERS_KEY: (4, 128)})
    else:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as refused:
        load_catalog(str(model_dir), lora_dir=tmp_path)
    assert str(refused.value).startswith("SDBOT_LORA_DIR"), refused.value  # the setting to fix


def test_missing_folders_and_twice_given_tokens(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"SDBOT_LORA_DIR .*nowhere is not a folder"):
        load_catalog(str(model_dir), lora_dir=tmp_path / "nowhere")
    tensors(tmp_path / "neg.safetensors", {"emb_params": (1, 128)})
    (tmp_path / "neg.pt").write_bytes(b"")
    with pytest.raises(
        ModelLoadError,
        match=r"^SDBOT_EMBEDDING_DIR: .*neg\.safetensors: token 'neg' is given by two",
    ):
        load_catalog(str(model_dir), embedding_dir=tmp_path)


# The models file ----------------------------------------------------------------------------


def models_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_a_models_file(model_dir: Path, tmp_path: Path) -> None:
    checkpoint = tensors(
        tmp_path / "sd15.safetensors",
        {
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (
                320, 768,
            ),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
        },
    )  # fmt: skip
    (tmp_path / "sd15-config").mkdir()
    path = models_file(
        tmp_path,
        f"""
        [[model]]
        name = "embedded"
        source = "{model_dir}"

        [[model]]
        name = "tiny.wide"
        source = "{model_dir}"
        sizes = ["3:2=96x64", "1:1=64x64"]
        steps = 8
        cfg = 2
        scheduler = "euler"
        nsfw_only = true
        default = true
        description = "the embedded model, wide"

        [[model]]
        name = "sd15"
        source = "{checkpoint.name}"   # beside the models file
        config = "sd15-config"

        [[model]]
        name = "xl"
        source = "stabilityai/stable-diffusion-xl-base-1.0"
        family = "sdxl"
        """,
    )
    catalog = load_catalog("ignored when a models file is given", models_file=path)
    assert [m.name for m in catalog.models] == ["embedded", "tiny.wide", "sd15", "xl"]
    assert catalog.default_model == "tiny.wide"
    wide = catalog.model(None)
    assert wide.sizes == (Size("3:2", 96, 64), Size("1:1", 64, 64))
    defaults = wide.defaults
    assert (defaults.steps, defaults.guidance_scale, defaults.scheduler) == (8, 2.0, "euler")
    assert (defaults.width, defaults.height) == (96, 64)  # the first size is the default
    assert wide.nsfw_only
    assert wide.description == "the embedded model, wide"
    assert catalog.model("embedded").defaults.steps == 20  # its sdbot.json, file says nothing
    sd15 = catalog.model("sd15")
    assert (sd15.source.kind, sd15.family, sd15.cross_attention_dim) == (
        SourceKind.SINGLE_FILE, Family.SD1, 768,
    )  # fmt: skip
    assert sd15.config == tmp_path / "sd15-config"
    assert sd15.sizes == FAMILY_SIZES[Family.SD1]
    xl = catalog.model("xl")
    assert (xl.source.kind, xl.cross_attention_dim, xl.sizes[0]) == (
        SourceKind.HUB, 2048, Size("1:1", 1024, 1024),
    )  # fmt: skip
    assert pickle.loads(pickle.dumps(catalog)) == catalog


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('name = "b"\nsource = "M"\ncolour = 1', r"model 2 \(b\): unknown field 'colour'"),
        ('name = "a"\nsource = "M"', r"model 2 \(a\): name 'a' is given twice"),
        ('name = "Big Model"\nsource = "M"', r"model 2 \(Big Model\): name must match"),
        (
            'name = "b"\nsource = "M"\ndefault = true\n'
            '[[model]]\nname = "c"\nsource = "M"\ndefault = true',
            r"model 3 \(c\): default = true, but another model is the default",
        ),
        ('name = "b"', r"model 2 \(b\): source is missing"),
        ('source = "M"', r"model 2 \(no name\): name is missing"),
        ('name = "b"\nsource = "M"\nsizes = ["3:2=768"]', "ASPECT=WIDTHxHEIGHT .* got '3:2=768'"),
        ('name = "b"\nsource = "M"\nsizes = ["1:1=60x60"]', "multiples of 8 .* got 60x60"),
        ('name = "b"\nsource = "M"\nsizes = ["1:1=8x8", "1:1=16x16"]', "aspect twice"),
        ('name = "b"\nsource = "M"\nsizes = []', "at least one size"),
        ('name = "b"\nsource = "M"\nsteps = "20"', "steps must be int, got '20'"),
        ('name = "b"\nsource = "M"\nsteps = true', "steps must be int, got True"),
        ('name = "b"\nsource = "M"\nscheduler = "magic"', "scheduler must be one of default"),
        ('name = "b"\nsource = "M"\nfamily = "sd3"', "family must be one of sd1, sd2, sdxl"),
        ('name = "b"\nsource = "M"\nconfig = "."', "config must be a folder, for a single-file"),
        ('name = "b"\nsource = "a/b"', "family is needed for a hub id"),
        ('name = "b"\nsource = "gone.safetensors"', "gone.safetensors does not exist"),
        ('name = "b"\nsource = "M"\ncontrolnets = "cn"', "controlnets must be dict, got 'cn'"),
        (
            'name = "b"\nsource = "M"\ncontrolnets = { depth = "cn" }',
            "controlnets names 'depth': the kinds are canny",
        ),
        ('name = "b"\nsource = "M"\ncontrolnets = { canny = 3 }', "controlnets.canny must be str"),
        (
            'name = "b"\nsource = "M"\ncontrolnets = { canny = "nowhere" }',
            "controlnets.canny must be a diffusers ControlNet folder .*, got .*nowhere",
        ),
    ],
)
def test_a_bad_models_file_names_the_file_entry_and_field(
    model_dir: Path, tmp_path: Path, entry: str, message: str
) -> None:
    text = f'[[model]]\nname = "a"\nsource = "{model_dir}"\n\n[[model]]\n{entry}\n'
    path = models_file(tmp_path, text.replace('"M"', f'"{model_dir}"'))
    with pytest.raises(ModelLoadError, match=message) as refused:
        load_catalog("", models_file=path)
    assert str(refused.value).startswith(f"SDBOT_MODELS_FILE: models file {path}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[model]\nname = 1", r"Expected '\]\]' at the end of an array declaration"),
        ('title = "x"', "expected .*model.* tables only"),
        ("", "expected .*model.* tables only"),
        ("model = [1]", r"model 1 is not a table: 1"),
    ],
)
def test_a_file_that_is_not_a_models_file(tmp_path: Path, text: str, message: str) -> None:
    path = models_file(tmp_path, text)
    with pytest.raises(ModelLoadError, match=f"models file {path}: {message}"):
        load_catalog("", models_file=path)


# Requests -----------------------------------------------------------------------------------


def ask(catalog: Catalog, limits: OptionLimits = LIMITS, **changes: object) -> object:
    requested = RequestedOptions(**{"prompt": "a red circle", "seed": 1, **changes})  # type: ignore[arg-type]
    return catalog.validate(requested, limits)


@pytest.fixture
def two_sizes(model_dir: Path, files: tuple[Path, Path], tmp_path: Path) -> Catalog:
    path = models_file(
        tmp_path,
        f"""
        [[model]]
        name = "embedded"
        source = "{model_dir}"
        steps = 30
        sizes = ["1:1=64x64", "3:2=96x64", "2:3=64x96"]
        [[model]]
        name = "big"
        source = "{model_dir}"
        sizes = ["1:1=768x768"]
        """,
    )
    return load_catalog("", models_file=path, lora_dir=files[0], embedding_dir=files[1])


def test_the_request_names_its_model_and_gets_its_sizes(two_sizes: Catalog) -> None:
    options = two_sizes.validate(RequestedOptions("a red circle", seed=1), LIMITS)
    assert (options.model, options.width, options.height, options.steps) == (
        "embedded", 64, 64, 30,
    )  # fmt: skip
    wide = two_sizes.validate(RequestedOptions("p", aspect="3:2"), LIMITS)
    assert (wide.width, wide.height) == (96, 64)
    tall = two_sizes.validate(RequestedOptions("p", width=64, height=96), LIMITS)
    assert (tall.width, tall.height) == (64, 96)
    # A server's max_steps caps the model's default instead of refusing every request.
    assert two_sizes.validate(RequestedOptions("p"), OptionLimits(max_steps=8)).steps == 8
    assert two_sizes.validate(RequestedOptions("p", model="big"), LIMITS).width == 768


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "sdxl"}, "model must be one of embedded, big, got 'sdxl'"),
        (
            {"width": 128, "height": 128},
            "size must be one of 64x64 (1:1), 96x64 (3:2), 64x96 (2:3), got '128x128'",
        ),
        (
            {"height": 64, "width": 64 + 8},
            "size must be one of 64x64 (1:1), 96x64 (3:2), 64x96 (2:3), got '72x64'",
        ),
        ({"aspect": "16:9"}, "aspect must be one of 1:1, 3:2, 2:3, got '16:9'"),
        ({"aspect": "3:2", "width": 96}, "aspect must be given alone"),
        ({"model": "big", "limits": OptionLimits(max_side=512)}, "size must be from 64 to 512 px"),
        (
            {"loras": (LoraChoice("nope"),)},
            "lora must be one of dots, outline, sd15-style, stripes, words, got 'nope'",
        ),
        (
            {"loras": (LoraChoice("outline", 2.5),)},
            "lora weight must be a number from -2 to 2 (outline), got 2.5",
        ),
        (
            {"loras": (LoraChoice("outline", float("nan")),)},
            "lora weight must be a number from -2 to 2",
        ),
        (
            {"loras": (LoraChoice("outline"), LoraChoice("outline", 0.5))},
            "lora must be each LoRA at most once, got 'outline'",
        ),
        (
            {"loras": (LoraChoice("outline"),) * (MAX_LORAS + 1)},
            f"lora must be at most {MAX_LORAS} LoRAs",
        ),
        (
            {"loras": (LoraChoice("sd15-style"),)},
            "lora must be a LoRA that fits embedded (sd1, attention 128 wide; sd15-style is "
            "768 wide): one of dots, outline, stripes, words, got 'sd15-style'",
        ),
        (
            {"negative_prompt": "sd15-neg"},
            "embedding must be one made for embedded's text encoder (128 wide; sd15-neg is 768)",
        ),
    ],
)
def test_bad_choices_are_named_with_what_is_allowed(
    two_sizes: Catalog, changes: dict[str, object], message: str
) -> None:
    limits = changes.pop("limits", LIMITS)
    assert isinstance(limits, OptionLimits)
    with pytest.raises(InvalidOption) as refused:
        ask(two_sizes, limits, **changes)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_loras_that_fit_come_back_sorted(two_sizes: Catalog) -> None:
    options = two_sizes.validate(
        RequestedOptions(
            "a dots circle",
            loras=(LoraChoice("stripes", -0.5), LoraChoice("words"), LoraChoice("outline", 0.8)),
        ),
        LIMITS,
    )
    assert [str(lora) for lora in options.loras] == ["outline:0.8", "stripes:-0.5", "words:1"]
    assert options.prompt == "a dots circle"  # an embedding's token stays in the prompt
    assert two_sizes.embeddings_in(options.prompt) == ("dots",)


def test_a_guild_max_side_filters_the_sizes(two_sizes: Catalog) -> None:
    small = OptionLimits(max_side=64)
    with pytest.raises(InvalidOption, match=r"aspect must be one of 1:1, got '3:2'"):
        ask(two_sizes, small, aspect="3:2")
    assert ask(two_sizes, small, aspect="1:1")


def test_a_lone_side_takes_the_other_from_the_default_size(two_sizes: Catalog) -> None:
    options = two_sizes.validate(RequestedOptions("p", width=96), LIMITS)
    assert (options.width, options.height) == (96, 64)


def test_lora_tags_leave_the_prompt_for_the_options(two_sizes: Catalog) -> None:
    options = two_sizes.validate(
        RequestedOptions(
            "a red <lora:stripes:0.5> circle <lora:dots>", loras=(LoraChoice("outline", -1),)
        ),
        LIMITS,
    )
    assert options.prompt == "a red circle"
    assert [str(lora) for lora in options.loras] == ["dots:1", "outline:-1", "stripes:0.5"]
    with pytest.raises(InvalidOption, match="lora must be each LoRA at most once, got 'outline'"):
        ask(two_sizes, prompt="<lora:outline:0.3> a circle", loras=(LoraChoice("outline"),))
    with pytest.raises(InvalidOption, match=r"lora weight must be a number from -2 to 2 \(dots\)"):
        ask(two_sizes, prompt="a circle <lora:dots:3>")
    with pytest.raises(InvalidOption, match=r"lora must be one of dots, .*got 'nope'"):
        ask(two_sizes, prompt="a circle <lora:nope>")
    with pytest.raises(InvalidOption, match="prompt must be non-empty text"):
        ask(two_sizes, prompt="<lora:dots>")  # nothing left to draw


def test_prompt_weights_beyond_the_range_are_refused_not_clamped(two_sizes: Catalog) -> None:
    options = two_sizes.validate(RequestedOptions("a (red:1.4) [circle]", seed=1), LIMITS)
    assert options.prompt == "a (red:1.4) [circle]"  # the worker reads the weights
    with pytest.raises(InvalidOption, match=r"prompt weight must be a number from 0 to 3.*got 5"):
        ask(two_sizes, prompt="a (red:5) circle")
    with pytest.raises(InvalidOption, match="prompt weight must be"):
        ask(two_sizes, negative_prompt="(blue:-1)")


def test_a_tiny_sdxl_as_folder_and_as_single_file(tmp_path: Path) -> None:
    from tests.tiny_families import build_saved

    folder, single = build_saved(Family.SDXL, tmp_path)
    path = models_file(
        tmp_path,
        f"""
        [[model]]
        name = "xl-folder"
        source = "{folder}"
        [[model]]
        name = "xl-file"
        source = "{single}"
        sizes = ["1:1=32x32", "16:9=56x32"]
        """,
    )
    catalog = load_catalog("", models_file=path)
    as_folder, as_file = catalog.models
    assert (as_folder.family, as_file.family) == (Family.SDXL, Family.SDXL)
    # Its UNet's width (two tiny text encoders side by side): from the config and the tensors.
    assert as_folder.cross_attention_dim == as_file.cross_attention_dim == 96
    assert as_folder.sizes[:2] == (Size("1:1", 32, 32), Size("3:2", 40, 24))  # SDXL's, at 32 px
    assert as_file.sizes == (Size("1:1", 32, 32), Size("16:9", 56, 32))


# ControlNets ----------------------------------------------------------------------------------


def controlnet_folder(path: Path) -> Path:
    """What the catalog checks of a ControlNet folder without loading it: config and weights."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    tensors(path / "diffusion_pytorch_model.safetensors", {"x": (1,)})
    return path


def test_a_models_file_names_each_model_s_controlnets(model_dir: Path, tmp_path: Path) -> None:
    folder = controlnet_folder(tmp_path / "cn" / "canny")
    path = models_file(
        tmp_path,
        f"""
        [[model]]
        name = "edges"
        source = "{model_dir}"
        controlnets = {{ canny = "cn/canny" }}   # beside the models file
        [[model]]
        name = "plain"
        source = "{model_dir}"
        controlnets = {{}}
        """,
    )
    catalog = load_catalog("", models_file=path)
    edges, plain = catalog.models
    assert edges.controlnets == (("canny", folder),)
    assert (edges.controlnet("canny"), plain.controlnet("canny")) == (folder, None)
    assert pickle.loads(pickle.dumps(catalog)) == catalog
    asked = catalog.validate(RequestedOptions("a red circle", control="canny"), LIMITS)
    assert asked.model == "edges"
    with pytest.raises(InvalidOption) as refused:
        catalog.validate(RequestedOptions("a red circle", model="plain", control="canny"), LIMITS)
    assert (
        str(refused.value)
        == "control_type must be none: model plain has no ControlNet, got 'canny'"
    )
    with pytest.raises(InvalidOption, match="control_type must be one of canny, got 'depth'"):
        catalog.validate(RequestedOptions("a red circle", control="depth"), LIMITS)
    # A ControlNet holds a drawing from noise: a picture to start from is refused with it.
    check_control(edges, "canny", "text")
    for start in ("image", "inpaint", "outpaint"):
        with pytest.raises(InvalidOption) as refused:
            check_control(edges, "canny", start)
        assert refused.value.option == "control"
        assert refused.value.allowed == "a prompt without image:"


def test_the_embedded_model_gets_the_controlnets_that_ship_with_it(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_files, "EMBEDDED_CONTROLNETS", tmp_path / "shipped")
    assert load_catalog(str(model_dir)).model(None).controlnets == ()  # none trained yet
    canny = controlnet_folder(tmp_path / "shipped" / "canny")
    assert load_catalog(str(model_dir)).model(None).controlnets == (("canny", canny),)
    (canny / "diffusion_pytorch_model.safetensors").unlink()  # half a folder is not one
    assert load_catalog(str(model_dir)).model(None).controlnets == ()
    # Another folder with the same weights is another model: nothing shipped for it.
    copy = shutil.copytree(model_dir, tmp_path / "copy", ignore=_no_weights)
    assert load_catalog(str(copy)).model(None).controlnets == ()
