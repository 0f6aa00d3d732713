"""Moved to ``storage.guild_settings``, ``storage.bans``, ``storage.terms`` and
``storage.moderation_log``; kept for the redesign's second round, which rewrites the imports
and deletes this module."""

from __future__ import annotations

from storage.bans import BanList as BanList
from storage.bans import BanRecord as BanRecord
from storage.guild_settings import MAX_CHANNELS as MAX_CHANNELS
from storage.guild_settings import GuildSettingsRecord as GuildSettingsRecord
from storage.guild_settings import GuildSettingsRepository as GuildSettingsRepository
from storage.moderation_log import ActionListener as ActionListener
from storage.moderation_log import ModerationActionRecord as ModerationActionRecord
from storage.moderation_log import ModerationLog as ModerationLog
from storage.terms import TermList as TermList
from storage.terms import TermRecord as TermRecord
