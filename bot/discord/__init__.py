"""The Discord side of sdbot: the client (``client``), its command tree (``tree``: the one place
that turns errors into text), one module per feature (``imagine``, ``jobs``, ``controls``,
``recovery``, ``mod``), and what they share: posting (``delivery``, ``retries``), the texts
(``render``, ``text``), who asks where (``interactions``), command sync (``sync``), where
discord.py connects (``endpoints``) and what it measures (``metrics``). The rules the features
apply live outside, in ``bot.access`` and ``bot.guild_admin``, so that the CLI shares them.

Nothing is imported here: ``bot.discord.text`` must not pull in the client.
"""
