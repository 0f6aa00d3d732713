"""Moved to the package ``bot.imagine`` (one module per concern); kept for the redesign's second
round, which rewrites the imports."""

from __future__ import annotations

from bot.guild_limits import guild_rates
from bot.imagine.controls import control_name as control_name
from bot.imagine.errors import ControlUnavailable as ControlUnavailable
from bot.imagine.errors import NotYours as NotYours
from bot.imagine.errors import SaveFailed as SaveFailed
from bot.imagine.errors import ShuttingDown as ShuttingDown
from bot.imagine.gate import ban_message as ban_message
from bot.imagine.leases import lease_owner as lease_owner
from bot.imagine.leases import lease_owner_dead as lease_owner_dead
from bot.imagine.outcomes import AlreadyStarted as AlreadyStarted
from bot.imagine.outcomes import ImagineOutcome as ImagineOutcome
from bot.imagine.outcomes import OutcomeCallback as OutcomeCallback
from bot.imagine.outcomes import QueuedCallback as QueuedCallback
from bot.imagine.outcomes import Refusal as Refusal
from bot.imagine.outcomes import ShownImage as ShownImage
from bot.imagine.outcomes import Submitted as Submitted
from bot.imagine.records import new_job as new_job
from bot.imagine.records import options_of as options_of
from bot.imagine.rules import guild_entries as guild_entries
from bot.imagine.rules import guild_rule as guild_rule
from bot.imagine.rules import moderate as moderate
from bot.imagine.rules import rules_for as rules_for
from bot.imagine.service import ImagineService as ImagineService
from bot.imagine.types import Derived as Derived
from bot.imagine.types import GuildLimits as GuildLimits
from bot.imagine.types import Requester as Requester

guild_limits = guild_rates  # a guild's own rates over the bot's: bot.guild_limits.guild_rates
