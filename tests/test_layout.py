"""The size of the rooms: no product module over about 400 lines.

A module does one thing and can be read in one sitting; past 400 lines it is doing several, and
the next feature should find a smaller room to land in. Generated data (``routes.json``) and the
embedded model's folder are not code and do not count.
"""

from __future__ import annotations

from tests.test_imports import PRODUCT, ROOT, product_modules

MAX_LINES = 400


def module_sizes() -> dict[str, int]:
    return {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for package in PRODUCT
        for path in product_modules(package)
    }


def test_the_sizes_are_read() -> None:
    sizes = module_sizes()
    assert "bot/app.py" in sizes
    assert not any(path.startswith("generation/embedded/model/") for path in sizes)
    assert all(lines > 0 for path, lines in sizes.items() if not path.endswith("__init__.py"))


def test_no_product_module_is_over_the_limit() -> None:
    over = sorted(
        ((path, lines) for path, lines in module_sizes().items() if lines > MAX_LINES),
        key=lambda entry: -entry[1],
    )
    assert not over, f"{len(over)} product modules are over {MAX_LINES} lines:\n" + "\n".join(
        f"{path}: {lines} lines" for path, lines in over
    )
