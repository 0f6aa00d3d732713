"""The database: what happened (the audit log) and what admins control, behind repositories.

Storage imports nothing of sdbot's but ``common``; the bot opens it from a URL
(``repositories.open_storage``) and passes the ``Storage`` of repositories in.

- ``models``: the SQLAlchemy tables (change them with an Alembic revision in ``alembic/``;
  ``tests/test_migrations.py`` fails when the two differ).
- ``records``: the plain values repositories take and return, and the row → record conversions.
- ``audit``: jobs and their images. ``posts``: which messages show which job. ``leases``: which
  process follows which open job. ``claims``: controls used on a job, once each.
- ``guild_settings``, ``bans``, ``terms``, ``moderation_log``: what a guild's moderators control.
- ``pictures``: image files that appear only with their record. ``export``: CSV and JSON Lines.
- ``engine``, ``migrations``: the engine from a URL; Alembic driven from code (opening checks
  the revision without importing Alembic).
- ``errors``: ``StorageError`` and its family, under ``common.errors.SdbotError``.
"""
