"""`sdbot forget USER_ID` and `sdbot purge`: a member's data deleted, and retention applied now.

`sdbot forget` without ``--yes`` only counts what it would delete and changes nothing (exit 0):
a deletion cannot be undone, so the command that does it is the one that says so, and a script
never hangs on a question. With ``--yes`` it deletes and records it; it exits 1 (and says so
on stderr) when a running job did not stop in time or a job the member asked for meanwhile is
still open.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_FAILED, EXIT_OK, CommandError
from bot.cli.arguments import MAX_GUILD_ID, guild_id

if TYPE_CHECKING:
    from bot.ops.privacy import ForgetReport
    from bot.settings import Settings

MAX_RETENTION_DAYS = 36500.0  # as SDBOT_RETENTION_DAYS allows
# bot.ops.privacy.STOP_WAIT_S, as the help says it (that module is not imported for --help;
# a test ties the two)
STOP_WAIT_HELP = "60 s"


def user_id(text: str) -> int:
    """A Discord user id: a whole number from 1 to 2^63-1 (the database's BIGINT)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= MAX_GUILD_ID:
        raise argparse.ArgumentTypeError(
            f"a user id must be a whole number from 1 to 2^63-1, got {text!r}"
        )
    return value


def days(text: str) -> float:
    """Days of retention: more than 0, at most 36500 (as SDBOT_RETENTION_DAYS)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_RETENTION_DAYS:  # nan and inf fail too
        raise argparse.ArgumentTypeError(
            f"days must be a number above 0 and at most {MAX_RETENTION_DAYS:.0f}, got {text!r}"
        )
    return value


def register(commands: Any) -> None:
    forget = commands.add_parser(
        "forget",
        help="delete a member's prompts, images and queue entries (counts only, without --yes)",
        description=(
            "Deletes a member's prompts, images and queue entries, and those of the jobs made "
            "from theirs by a control (whoever clicked). Without --yes it only counts. Exit "
            f"status 1 when a running job did not stop within {STOP_WAIT_HELP} (it is recorded "
            "cancelled and purged; if its worker still finishes, its pictures are discarded, "
            "and `sdbot recover` sweeps any file left) "
            "or a job the member asked for meanwhile is still open (run it again); stderr "
            "names the jobs."
        ),
    )
    forget.add_argument("user", type=user_id, metavar="USER_ID", help="the member's Discord id")
    forget.add_argument("--guild", type=guild_id, help="only in this guild (default: everywhere)")
    forget.add_argument(
        "--yes",
        action="store_true",
        help="delete (without: count only); exit 1 if a job did not stop",
    )
    forget.add_argument(
        "--leave-posts",
        action="store_true",
        help="delete even though sdbot's posts of these jobs stay in Discord (this command "
        "cannot reach Discord, and afterwards nothing finds them: /privacy delete or /mod "
        "forget take them down first)",
    )
    forget.add_argument("--json", action="store_true")
    forget.set_defaults(handler=run_forget)

    purge = commands.add_parser(
        "purge", help="apply retention now: purge the prompts and images of old records"
    )
    purge.add_argument(
        "--days", type=days, help="records that ended this long ago (default SDBOT_RETENTION_DAYS)"
    )
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(handler=run_purge)


def _where(report: ForgetReport) -> str:
    return "everywhere" if report.guild_id is None else f"in guild {report.guild_id}"


def _n(count: int, noun: str, nouns: str = "") -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _counted(report: ForgetReport) -> str:
    return (
        f"{_n(report.jobs, 'record')} ({_n(report.prompts, 'prompt')} purged, ids, verdicts "
        "and hashes kept), "
        f"{_n(report.images, 'image file')}, {_n(report.inputs, 'picture')} given in, "
        f"{_n(report.redis_entries, 'job')} in Redis"
    )


def _shown(posts: int) -> str:
    return (
        f"{_n(posts, 'post')} of sdbot's in Discord {'shows' if posts == 1 else 'show'} these jobs"
    )


def _unfinished(report: ForgetReport) -> list[str]:
    """What a deletion could not finish, one line each (for stderr)."""
    from bot.ops.privacy import STOP_WAIT_S

    lines = []
    if report.unstopped:
        lines.append(
            f"running jobs {_ids(report.unstopped)} did not stop within {STOP_WAIT_S:g} s: "
            "recorded cancelled and purged; if their worker still finishes, their pictures "
            "are discarded, and `sdbot recover` removes any file left"
        )
    if report.still_open:
        lines.append(
            f"jobs {_ids(report.still_open)} were asked for while the deletion ran and are "
            f"still open: not deleted; run `sdbot forget {report.user_id} --yes` again"
        )
    return lines


def _ids(job_ids: tuple[int, ...]) -> str:
    return ", ".join(str(job_id) for job_id in job_ids)


async def run_forget(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_service, open_storage
    from bot.guild_admin.posts import deletion_posts
    from bot.ops.privacy import forget_member, forget_preview

    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        posts = len(await deletion_posts(storage.posts, storage.retention, args.user, args.guild))
        if args.yes and posts and not args.leave_posts:
            raise CommandError(
                f"{_shown(posts)}, and this command "
                "cannot take them down (afterwards nothing could find them): have the member "
                "run /privacy delete, or a moderator /mod forget, while the bot runs; or give "
                "--leave-posts to delete the rest and leave them"
            )
        if args.yes:
            report = await forget_member(
                service, user_id=args.user, guild_id=args.guild, actor_id=None, via="cli"
            )
        else:
            report = await forget_preview(service, user_id=args.user, guild_id=args.guild)
    if args.json:
        print(json.dumps({"deleted": bool(args.yes), "posts": posts, **asdict(report)}, indent=2))
    elif not args.yes:
        print(
            f"would delete for user {report.user_id} {_where(report)}: {_counted(report)}; "
            f"{_n(report.cancelled, 'open job')} would be cancelled first.\n"
            + (
                f"{_shown(posts)}: /privacy delete "
                "or /mod forget take them down too; this command cannot (--leave-posts).\n"
                if posts
                else ""
            )
            + "Nothing was changed: run again with --yes to delete."
        )
    elif report.nothing and not report.unstopped:
        print(f"nothing of user {report.user_id} was left to delete {_where(report)} (recorded)")
    else:
        print(
            f"deleted for user {report.user_id} {_where(report)}: {_counted(report)}; "
            f"{_n(report.cancelled, 'open job')} cancelled first (recorded as a 'forget' action)"
        )
    unfinished = _unfinished(report) if args.yes else []
    for line in unfinished:
        print(line, file=sys.stderr)
    return EXIT_FAILED if unfinished else EXIT_OK


async def run_purge(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_storage
    from bot.ops.retention import purge_expired

    chosen = args.days if args.days is not None else settings.retention_days
    if chosen is None:
        raise CommandError(
            "no retention to apply: give --days N or set SDBOT_RETENTION_DAYS (records are "
            "kept forever without it)"
        )
    async with open_storage(settings) as storage:
        report = await purge_expired(storage, settings.effective_output_dir(), chosen)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        unit = "day" if report.days == 1 else "days"
        print(
            f"purged {_n(report.jobs, 'record')} that ended before "
            f"{report.cutoff.isoformat(timespec='seconds')} ({report.days:g} {unit}): "
            f"{_n(report.images, 'image file')} deleted, {_n(report.inputs, 'picture')} given in "
            "dropped"
        )
    return EXIT_OK
