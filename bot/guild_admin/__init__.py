"""What a guild's moderators do, whatever they do it from: bans, lists, settings, pausing,
purging, reviewing and exporting the audit log.

The rules live here as typed refusals (``refusals``) whose message is what the person reads;
`/mod` (``bot.discord.mod``) and ``sdbot`` render outcomes and let refusals through to the one
place that words errors. ``admin`` holds :class:`GuildAdmin`, ``settings`` the settings changes
(checked against ``bot.guild_settings``' spec table), ``record`` reading the record.
"""

from bot.guild_admin.admin import BanOutcome as BanOutcome
from bot.guild_admin.admin import GuildAdmin as GuildAdmin
from bot.guild_admin.ports import AdminService as AdminService
from bot.guild_admin.ports import AdminStorage as AdminStorage
from bot.guild_admin.ports import CanPost as CanPost
from bot.guild_admin.ports import StopJob as StopJob
from bot.guild_admin.posts import Deleted as Deleted
from bot.guild_admin.posts import DeletePost as DeletePost
from bot.guild_admin.posts import PurgeOutcome as PurgeOutcome
from bot.guild_admin.posts import take_down as take_down
from bot.guild_admin.record import Export as Export
from bot.guild_admin.record import HistoryEntry as HistoryEntry
from bot.guild_admin.record import Review as Review
from bot.guild_admin.refusals import MOD_PERMISSION as MOD_PERMISSION
from bot.guild_admin.refusals import AdminRefusal as AdminRefusal
from bot.guild_admin.refusals import BanRefused as BanRefused
from bot.guild_admin.refusals import ChannelRefused as ChannelRefused
from bot.guild_admin.refusals import InvalidDuration as InvalidDuration
from bot.guild_admin.refusals import LogChannelRefused as LogChannelRefused
from bot.guild_admin.refusals import Member as Member
from bot.guild_admin.refusals import SettingsConflict as SettingsConflict
from bot.guild_admin.refusals import check_ban as check_ban
from bot.guild_admin.refusals import expiry as expiry
from bot.guild_admin.settings import ChannelEdit as ChannelEdit
from bot.guild_admin.settings import SettingsChange as SettingsChange
from bot.guild_admin.settings import requested_changes as requested_changes
from bot.guild_settings import InvalidSetting as InvalidSetting
