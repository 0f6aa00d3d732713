"""The Discord side of sdbot: the client (``client``), its command tree (``tree``: the one place
that turns errors into text), one module per feature (``imagine``, ``jobs``, ``controls``,
``mod``), and what they share: posting (``delivery``, ``retries``), texts (``render``, ``text``),
command sync (``sync``) and where discord.py connects (``endpoints``).

Nothing is imported here: ``bot.discord.text`` must not pull in the client.
"""
