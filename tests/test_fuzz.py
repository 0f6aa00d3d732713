"""Property-based fuzzing of the command line's edge (hypothesis): whatever options, prompts,
terms, guild settings, dates and settings are given, ``sdbot`` never shows a traceback; it
either does the thing or prints one line that names a value, with exit 2.

The CLI runs in-process (``bot.cli.main``) on a real SQLite file. Every example budget is fixed
and derandomized, so the suite costs the same in every run (well under a minute in all).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generation.options import SCHEDULERS
from tests.test_edges import Run, one_line_error, sqlite_cli  # noqa: F401  (a fixture)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as a shell delivers it: any Unicode, invalid bytes as surrogate escapes, and NUL.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\udcff", "\udc80", "*", "{", "(", "?", "\\", "'", "\n"]),
    ),
    max_size=30,
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e-306", "1e400", "0x10", "", " 7", "٣"]),
    hostile_text,
)
guild_ids = st.one_of(
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64, -(2**63)]).map(str),
    st.integers(-(2**66), 2**66).map(str),
    hostile_text,
)


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Run:
    """test_edges' ``sqlite_cli``: the CLI in-process on a migrated SQLite file."""
    run: Run = request.getfixturevalue("sqlite_cli")
    return run


FLAGS = {"--regex"}


def as_typed(args: list[str], words: int, positionals: int = 1) -> list[str]:
    """``args`` as a careful user types them: ``--option=value`` and positionals after ``--``,
    so that a value starting with '-' is not read as an option."""
    head, middle = args[:words], args[words : words + positionals]
    rest, options = args[words + positionals :], []
    while rest:
        if rest[0] in FLAGS:
            options.append(rest.pop(0))
        else:
            options.append(f"{rest.pop(0)}={rest.pop(0)}")
    return [*head, *options, "--", *middle] if middle else [*head, *options]


def refused_or_done(result: tuple[int, str, str], done: set[int]) -> str:
    """The error line of a refusal (exit 2), or "" when the command did its work."""
    code, _, err = result
    assert "Traceback" not in err
    if code in done:
        return ""
    assert code == 2, err
    return one_line_error(err)


def names_one_of(line: str, values: list[str]) -> None:
    """A refusal names a value: the text given, or the number it was read as."""
    shown = {repr(value) for value in values} | {value for value in values if value.strip()}
    shown |= {value[:40] for value in values if len(value) > 40}  # a long text is cut short
    for value in values:
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number) and number == int(number):
            shown.add(str(int(number)))
        shown.add(repr(number))
    assert any(text in line for text in shown), (line, values)


# One option at least is out of range, so no example runs the model; the others are anything.
BAD_OPTIONS = {
    "--steps": st.sampled_from(["0", "-3", "51", "1e3", "many", str(2**64)]),
    "--cfg": st.sampled_from(["-0.5", "20.5", "nan", "inf", "-inf", "1e400", "x"]),
    "--width": st.sampled_from(["63", "100", "0", "-64", "4096", "128.0"]),
    "--height": st.sampled_from(["7", "1032", "1e2"]),
    "--variants": st.sampled_from(["0", "5", "-1", "four"]),
    "--seed": st.sampled_from(["-1", str(2**32), str(2**70), "0.5"]),
    "--scheduler": st.sampled_from(["", "PNDM", "ddpm", "euler a", "\udcff"]),
    "--guild": st.sampled_from([str(2**63), "-1", "0", "g"]),
}


@st.composite
def imagine_args(draw: st.DrawFn) -> list[str]:
    prompt = draw(
        st.one_of(
            hostile_text,
            st.sampled_from(["a cat", " ", "a\x00cat", "a cat\udcff", "x" * 1001]),
        )
    )
    bad = draw(st.sampled_from([*BAD_OPTIONS, "pndm", "prompt"]))
    args = ["imagine", prompt]
    if bad == "prompt":
        args[1] = draw(st.sampled_from(["", "   ", "\x00", "\udcfe", "y" * 1001]))
    elif bad == "pndm":
        args += ["--scheduler", "pndm", "--steps", draw(st.sampled_from(["1", "2", "3"]))]
    else:
        args += [bad, draw(BAD_OPTIONS[bad])]
    for option in draw(st.lists(st.sampled_from(list(BAD_OPTIONS)), max_size=3, unique=True)):
        if option not in args:
            good = {"--scheduler": st.sampled_from(SCHEDULERS), "--guild": guild_ids}
            args += [option, draw(good.get(option, numbers))]
    if draw(st.booleans()):
        args += ["--negative", draw(hostile_text)]
    return args


@FUZZ
@given(args=imagine_args())
def test_imagine_options_and_prompts_never_crash(cli: Run, args: list[str]) -> None:
    line = refused_or_done(cli(*as_typed(args, 1)), done=set())
    names_one_of(line, args[1:])


@FUZZ
@given(prompt=hostile_text, negative=hostile_text, guild=st.one_of(st.none(), guild_ids))
def test_moderate_never_crashes(cli: Run, prompt: str, negative: str, guild: str | None) -> None:
    args = ["moderate", prompt, "--negative", negative, *(["--guild", guild] if guild else [])]
    line = refused_or_done(cli(*as_typed(args, 1)), done={0, 3})
    if line:
        names_one_of(line, args[1:])


patterns = st.one_of(
    hostile_text,
    st.sampled_from(
        ["(?V0)a", "(?V1)a", "a{2000}", "(a+)+$", "[", "(?i)nude", "a{,5}", r"\p{L}+", "(?<x>a)"]
    ),
    st.from_regex(r"[a-z(){}\[\]*+?|\\^$.,0-9]{1,12}", fullmatch=True),
)


@FUZZ
@given(
    term=patterns,
    regex=st.booleans(),
    kind=st.sampled_from(["block", "allow", "force-safe"]),
    guild=st.one_of(st.none(), guild_ids),
    expires=st.one_of(
        st.none(),
        st.sampled_from(["7d", "0m", "99999999999w", "2001-01-01", "9999-12-31T23:59:59-01:00"]),
        hostile_text,
    ),
)
def test_terms_never_crash(
    cli: Run, term: str, regex: bool, kind: str, guild: str | None, expires: str | None
) -> None:
    args = ["terms", "add", term, "--kind", kind]
    args += ["--regex"] if regex else []
    args += ["--guild", guild] if guild is not None else []
    args += ["--expires", expires] if expires is not None else []
    line = refused_or_done(cli(*as_typed(args, 2)), done={0})
    combination = ("characters", "must not be empty", "an allow entry is a term")
    if line and not any(words in line for words in combination):
        names_one_of(line, [term, *(v for v in (guild, expires) if v is not None)])
    refused_or_done(cli(*as_typed(["terms", "remove", term, "--kind", kind], 2)), done={0, 4})


GUILD_OPTIONS = {
    "--nsfw-policy": st.sampled_from(["block", "spoiler", "allow", ""]),
    "--nsfw-threshold": numbers,
    "--user-images-per-hour": numbers,
    "--guild-images-per-hour": numbers,
    "--max-jobs-per-user": numbers,
    "--max-steps": numbers,
    "--max-side": numbers,
    "--channels": st.one_of(
        st.sampled_from(["all", "1,2", str(2**63), "-5", ",", "1,,2", "0"]), hostile_text
    ),
    "--controls": st.sampled_from(["requester", "everyone", "nobody"]),
}


@FUZZ
@given(
    guild=guild_ids,
    options=st.dictionaries(st.sampled_from(list(GUILD_OPTIONS)), st.just(""), max_size=4),
    data=st.data(),
)
def test_guild_settings_never_crash(
    cli: Run, guild: str, options: dict[str, str], data: st.DataObject
) -> None:
    args = ["guild", "set", guild]
    for option in options:
        args += [option, data.draw(GUILD_OPTIONS[option], label=option)]
    line = refused_or_done(cli(*as_typed(args, 2)), done={0})
    if line and "nothing to change" not in line and "channels must name" not in line:
        names_one_of(line, args[2:])
    refused_or_done(cli("guild", "show", "--", guild), done={0})


dates = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(
        ["0001-01-01T00:00+01:00", "9999-12-31T23:59:59-23:59", "10000-01-01", "2026-02-30"]
    ),
    hostile_text,
)


@FUZZ
@given(since=dates, guild=st.one_of(st.none(), guild_ids), form=st.sampled_from(["csv", "jsonl"]))
def test_audit_export_dates_never_crash(cli: Run, since: str, guild: str | None, form: str) -> None:
    args = ["audit", "export", "--format", form, "--since", since]
    args += ["--guild", guild] if guild is not None else []
    line = refused_or_done(cli(*as_typed(args, 2, 0)), done={0})
    if line:
        names_one_of(line, [since, *([guild] if guild is not None else [])])


URL_PARTS = st.sampled_from(
    ["redis://", "rediss://", "unix://", "http://", "postgresql+asyncpg://", "sqlite+aiosqlite:///",
     "mysql+aiomysql://", "wss://", "u:pw@", "[", "h", ":", "99999", "/", "0", "?", "sslmode=x",
     "password=pw", "&", "#", "~"]
)  # fmt: skip
SETTINGS = {
    "SDBOT_MAX_STEPS": numbers,
    "SDBOT_MAX_GUIDANCE": numbers,
    "SDBOT_MIN_SIDE": numbers,
    "SDBOT_NSFW_THRESHOLD": numbers,
    "SDBOT_WORKER_RECLAIM_S": numbers,
    "SDBOT_JOB_STALL_TIMEOUT_S": numbers,
    "SDBOT_USER_IMAGES_PER_HOUR": numbers,
    "SDBOT_GUILD_BURST": numbers,
    "SDBOT_TORCH_THREADS": numbers,
    "SDBOT_DISCORD_SHARD_IDS": st.sampled_from(["[0,1]", "[5]", "x", "[]", "[-1]"]),
    "SDBOT_DISCORD_COMMANDS_GUILD": guild_ids,
    "SDBOT_DATA_DIR": st.sampled_from(["~nosuchuser-sdbot/x", "~", "/tmp/sdbot-fuzz", "rel"]),
    "SDBOT_DTYPE": st.sampled_from(["auto", "float8", ""]),
    "SDBOT_DEVICE": st.sampled_from(["cpu", "cuda:x", "tpu", ""]),
    "SDBOT_REDIS_PREFIX": hostile_text.filter(lambda text: "\x00" not in text),
    "SDBOT_DATABASE_URL": st.lists(URL_PARTS, max_size=8).map("".join),
    "SDBOT_REDIS_URL": st.lists(URL_PARTS, max_size=8).map("".join),
    "SDBOT_DISCORD_API_URL": st.lists(URL_PARTS, max_size=8).map("".join),
    "SDBOT_DISCORD_GATEWAY_URL": st.lists(URL_PARTS, max_size=8).map("".join),
}


@FUZZ
@given(
    names=st.lists(st.sampled_from(list(SETTINGS)), min_size=1, max_size=3, unique=True),
    data=st.data(),
)
def test_settings_never_crash(
    cli: Run, monkeypatch: pytest.MonkeyPatch, names: list[str], data: st.DataObject
) -> None:
    with monkeypatch.context() as env:
        for name in names:
            value = data.draw(SETTINGS[name], label=name)
            if "\x00" in value or any("\udc80" <= c <= "\udcff" for c in value):
                value = value.replace("\x00", "").encode("utf-8", "replace").decode()
            env.setenv(name, value.encode("utf-8", "replace").decode())
        line = refused_or_done(cli("config"), done={0})
    if line:
        assert line.startswith("sdbot: error: invalid settings: SDBOT_") or (
            "invalid settings: SDBOT_DISCORD_SHARD_IDS" in line or "SDBOT_MIN_SIDE" in line
        ), line
        assert "pw@" not in line
        assert "password=pw" not in line
