"""Benchmarks (``sdbot bench ...``): they import the product and measure it.

Nothing in the product imports this package except its command-line entry, ``bot/cli/bench.py``,
and only inside the handlers that run a bench, so the bot process never loads it. A bench may
import ``bot``, ``generation``, ``moderation``, ``storage``, ``common`` and the fake Discord, never
``tests`` at module level (``tests/test_imports.py`` checks it).
"""
