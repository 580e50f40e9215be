"""`sessions: true` claude_cli channels: the CLI keeps each tenant's sessions in that tenant's
own directory, a follow-up resumes its session (`--resume`, only the new turn on stdin), and
whatever cannot be resumed is replayed in full. The real pinned CLI against the fake
Anthropic server, driven through the adaptor (the stored-response wiring is relay's)."""
from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay_adaptors.claude_cli import ClaudeCliAdaptor
from relay_adaptors.claude_cli.prompt import Session, build
from relay_adaptors.claude_cli.sessions import SWEEP_EVERY, SessionDirs, owner_dir_name, valid_session_id
from relay_adaptors.kernel.base import Call, Resume
from relay_adaptors.kernel.errors import RelayError
from relay_config.loader import ConfigError, parse_config
from relay_config.schema import ClaudeCliChannel

from .support.cli import CLI_KEY, GERMAN, RecordingCli, eventually, private_tmp, sessions_cli_config, stand_in_config

SYSTEM = {"role": "system", "content": "Answer in German."}
FIRST = [SYSTEM, {"role": "user", "content": "first question"}]
# The follow-up: the session has seen messages[:3] (system, first question, its answer).
FOLLOW_UP = [*FIRST, {"role": "assistant", "content": GERMAN}, {"role": "user", "content": "second question"}]
NEW_FROM = 3
SAVE_TRIES = 12  # the pinned CLI, loaded, may drop the turn from several sessions in a row


@pytest.fixture(autouse=True)
def cli_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return private_tmp(tmp_path, monkeypatch)


@pytest.fixture
def cli(tmp_path: Path) -> RecordingCli:
    return RecordingCli(tmp_path)


@pytest.fixture
def sessions_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


def channel(config_text: str) -> ClaudeCliChannel:
    cfg = parse_config(config_text, "test.yaml", env={}).channels[0]
    assert isinstance(cfg, ClaudeCliChannel)
    return cfg


def adaptor(fake_anthropic: Any, cli: RecordingCli, sessions_dir: Path | None, **kw: Any) -> ClaudeCliAdaptor:
    return ClaudeCliAdaptor(channel(sessions_cli_config(fake_anthropic.url, cli.command, sessions_dir, **kw)))


def call(messages: list[dict[str, Any]], owner: str = "acme", resume: Resume | None = None, upstream: str = "text") -> Call:
    return Call({"model": "cli-text", "messages": messages}, upstream, "req_test", owner=owner, resume=resume)


async def answer(a: ClaudeCliAdaptor, c: Call) -> str:
    body = await a.complete(c)
    return str(body["choices"][0]["message"]["content"])


def session_file(sessions_dir: Path, owner: str, session_id: str) -> Path:
    found = list((sessions_dir / owner_dir_name(owner) / "config" / "projects").glob(f"*/{session_id}.jsonl"))
    assert len(found) == 1, found
    return found[0]


def sent_text(run: dict[str, Any]) -> str:
    return json.dumps(run["stdin"], ensure_ascii=False)


async def saved(a: ClaudeCliAdaptor, make: Callable[[], Call]) -> Call:
    """A call whose answer the CLI saved as a session. The pinned CLI, on a busy machine,
    now and then exits cleanly without saving the turn whole; the adaptor then reports no
    session (test_an_incomplete_session_is_not_reported), and here the turn is asked again."""
    for _ in range(SAVE_TRIES):
        c = make()
        assert await answer(a, c) == GERMAN
        if c.report.session_id:
            return c
    raise AssertionError(f"the CLI saved no whole session in {SAVE_TRIES} runs")


async def first_session(a: ClaudeCliAdaptor) -> str:
    c = await saved(a, lambda: call(FIRST))
    assert c.report.session_id
    return c.report.session_id


# --- the real CLI ----------------------------------------------------------------------------

async def test_a_first_run_reports_the_session_it_left_in_the_owner_s_directory(fake_anthropic, cli, sessions_dir):
    a = adaptor(fake_anthropic, cli, sessions_dir)
    assert a.capabilities.resumes_sessions
    sid = await first_session(a)
    run = cli.runs()[-1]
    assert "--no-session-persistence" not in run["argv"] and "--resume" not in run["argv"]
    owner = sessions_dir / owner_dir_name("acme")
    assert run["config_dir"] == str(owner / "config") and run["cwd"] == str(owner / "work")
    assert "first question" in session_file(sessions_dir, "acme", sid).read_text()
    assert not [p for p in sessions_dir.rglob("*") if p.is_file() and CLI_KEY in p.read_text(errors="replace")]
    # Private, and no tenant name in any path.
    for path in [sessions_dir, *sessions_dir.rglob("*")]:
        assert "acme" not in str(path.relative_to(sessions_dir.parent))
        if path.is_dir():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


async def test_a_follow_up_resumes_the_session_with_only_the_new_turn(fake_anthropic, cli, sessions_dir):
    a = adaptor(fake_anthropic, cli, sessions_dir)
    sid = await first_session(a)
    before = session_file(sessions_dir, "acme", sid).read_bytes()
    c = await saved(a, lambda: call([{"role": "system", "content": "Antworte knapp."}, *FOLLOW_UP[1:]],
                                    resume=Resume(sid, NEW_FROM)))
    run = cli.runs()[-1]
    resumed = run["argv"][run["argv"].index("--resume") + 1]
    assert "second question" in sent_text(run) and "first question" not in sent_text(run) and GERMAN not in sent_text(run)
    # The CLI replayed its own session: the upstream saw the whole history, turn by turn,
    # with this request's system prompt.
    sent = fake_anthropic.last.body
    history = json.dumps(sent["messages"], ensure_ascii=False)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert "first question" in history and GERMAN in history and "second question" in history
    assert any("Antworte knapp." in b["text"] for b in sent["system"])
    assert not any("Answer in German." in b["text"] for b in sent["system"])
    # A copy was resumed: a new session for this answer, the first one left as it was (a
    # second follow-up of the first answer must not see this one).
    assert c.report.session_id == resumed != sid
    assert session_file(sessions_dir, "acme", sid).read_bytes() == before
    assert "second question" in session_file(sessions_dir, "acme", resumed).read_text()
    # And the new session goes on in turn.
    c = call([*FOLLOW_UP, {"role": "assistant", "content": GERMAN}, {"role": "user", "content": "third question"}],
             resume=Resume(resumed, NEW_FROM + 2))
    assert await answer(a, c) == GERMAN
    assert "third question" in sent_text(cli.runs()[-1]) and "second question" not in sent_text(cli.runs()[-1])
    history = json.dumps(fake_anthropic.last.body["messages"], ensure_ascii=False)
    assert all(q in history for q in ("first question", "second question", "third question"))


async def test_another_owner_cannot_resume_it_and_gets_the_full_replay(fake_anthropic, cli, sessions_dir, caplog):
    a = adaptor(fake_anthropic, cli, sessions_dir)
    sid = await first_session(a)
    c = call(FOLLOW_UP, owner="globex", resume=Resume(sid, NEW_FROM))
    with caplog.at_level(logging.INFO, logger="relay"):
        assert await answer(a, c) == GERMAN
    run = cli.runs()[-1]
    assert not any("--resume" in r["argv"] or r["config_dir"] != str(sessions_dir / owner_dir_name("acme") / "config")
                   for r in cli.runs()[:-1])  # the first owner's runs only, then theirs: no attempt to resume
    assert "--resume" not in run["argv"] and sid not in run["argv"]
    theirs = sessions_dir / owner_dir_name("globex")
    assert run["config_dir"] == str(theirs / "config") and run["cwd"] == str(theirs / "work")
    assert "first question" in sent_text(run) and "second question" in sent_text(run)
    assert "no such session" in caplog.text
    assert c.report.session_id != sid  # any session they have is their own, in their own directory
    assert not list((theirs / "config" / "projects").glob(f"*/{sid}.jsonl"))


async def test_a_session_the_cli_cannot_find_is_replayed_in_full(fake_anthropic, cli, sessions_dir, caplog):
    """The file vanished between Relay's look and the CLI's (here: it sits where the CLI does
    not look): the CLI fails before asking the model, and the request is replayed."""
    a = adaptor(fake_anthropic, cli, sessions_dir)
    sid = await first_session(a)
    found = session_file(sessions_dir, "acme", sid)
    elsewhere = found.parent.parent / "-elsewhere"
    elsewhere.mkdir()
    found.rename(elsewhere / found.name)
    asked = len(fake_anthropic.requests)
    c = call(FOLLOW_UP, resume=Resume(sid, NEW_FROM))
    with caplog.at_level(logging.INFO, logger="relay"):
        assert await answer(a, c) == GERMAN
    resumed, replayed = cli.runs()[-2:]
    assert "--resume" in resumed["argv"] and "--resume" not in replayed["argv"]
    assert "first question" in sent_text(replayed)
    assert len(fake_anthropic.requests) == asked + 1  # the failed resume asked the model nothing
    assert "could not resume a copy" in caplog.text
    assert c.report.session_id != sid
    assert [p.name for p in elsewhere.iterdir()] == [found.name]  # the copy it could not resume is gone


BOGUS_IDS = ["--help", "../../../etc/passwd", "0f8f190e-b887-426e-8b50-c4d8f4bd8df3\n", "0f8f190e-b887-426e-8b50-c4d8f4bd8df3 --x",
             "0F8F190E-B887-426E-8B50-C4D8F4BD8DF3", "", "0f8f190e-b887-426e-8b50-c4d8f4bd8df"]


@pytest.mark.parametrize("bogus", ["--help", "0f8f190e-b887-426e-8b50-c4d8f4bd8df3\n"])
async def test_a_bogus_session_id_never_reaches_argv(fake_anthropic, cli, sessions_dir, bogus):
    a = adaptor(fake_anthropic, cli, sessions_dir)
    c = call(FOLLOW_UP, resume=Resume(bogus, NEW_FROM))
    assert await answer(a, c) == GERMAN
    (run,) = cli.runs()
    assert "--resume" not in run["argv"] and bogus not in run["argv"]
    assert "first question" in sent_text(run)


async def test_a_failed_run_reports_no_session_and_keeps_no_copy(fake_anthropic, cli, sessions_dir):
    a = adaptor(fake_anthropic, cli, sessions_dir)
    sid = await first_session(a)
    c = call(FOLLOW_UP, resume=Resume(sid, NEW_FROM), upstream="status-429")
    with pytest.raises(RelayError) as err:
        await a.complete(c)
    assert err.value.status == 429 and c.report.session_id is None
    assert "--resume" in cli.runs()[-1]["argv"]
    assert [p.name for p in session_file(sessions_dir, "acme", sid).parent.iterdir()] == [f"{sid}.jsonl"]


async def test_without_sessions_nothing_is_kept(fake_anthropic, cli, sessions_dir):
    a = adaptor(fake_anthropic, cli, sessions_dir, sessions=False)
    assert not a.capabilities.resumes_sessions
    c = call(FIRST)
    assert await answer(a, c) == GERMAN
    (run,) = cli.runs()
    assert "--no-session-persistence" in run["argv"] and run["config_dir"] == ""
    assert c.report.session_id is None and not sessions_dir.exists()


async def test_a_planted_link_turns_sessions_off_for_that_owner(fake_anthropic, cli, sessions_dir, tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sessions_dir.mkdir(mode=0o755)
    (sessions_dir / owner_dir_name("acme")).symlink_to(elsewhere)
    a = adaptor(fake_anthropic, cli, sessions_dir)
    c = call(FIRST)
    with caplog.at_level(logging.WARNING, logger="relay"):
        assert await answer(a, c) == GERMAN  # the request still runs, without a session
    (run,) = cli.runs()
    assert "--no-session-persistence" in run["argv"] and c.report.session_id is None
    assert not list(elsewhere.iterdir()) and "sessions directory is unusable" in caplog.text
    assert stat.S_IMODE(sessions_dir.stat().st_mode) == 0o700  # and the root was made private


async def test_starting_a_process_sweeps_old_session_files(tmp_path, sessions_dir):
    old = sessions_dir / owner_dir_name("someone") / "config" / "projects" / "p" / "old.jsonl"
    old.parent.mkdir(parents=True)
    old.write_text("{}\n")
    os.utime(old, (1, 1))
    config = stand_in_config(tmp_path, "argv", "sweep").replace(
        "    models: [cli]", f"    sessions: true\n    sessions_dir: {sessions_dir}\n    models: [cli]")
    a = ClaudeCliAdaptor(channel(config))
    body = await a.complete(call(FIRST))
    assert "first question" in body["choices"][0]["message"]["content"]
    assert await eventually(lambda: not old.exists(), 5)


# --- pure pieces -------------------------------------------------------------------------------

def test_the_resume_invocation_sends_only_the_new_turns() -> None:
    kw: dict[str, Any] = {"command": "claude", "base_env": {}, "home": "", "extra_args": [], "api_key": "k",
                          "base_url": None, "first_byte": 5}
    sid = "0f8f190e-b887-426e-8b50-c4d8f4bd8df3"
    messages = [*FOLLOW_UP[:3], {"role": "user", "content": "second question"}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": "third question"}]
    inv = build({"messages": messages}, "m", session=Session("/cfg", sid, NEW_FROM), **kw)
    text = inv.stdin.decode()
    assert "second question" in text and "third question" in text and "first question" not in text
    assert inv.env["CLAUDE_CONFIG_DIR"] == "/cfg" and inv.argv[-3:-1] == ["--resume", sid]
    assert "--no-session-persistence" not in build({"messages": FIRST}, "m", session=Session("/cfg"), **kw).argv
    for bogus in BOGUS_IDS:
        assert not valid_session_id(bogus)
        with pytest.raises(ValueError):
            Session("/cfg", bogus, NEW_FROM)
    with pytest.raises(ValueError):
        Session("/cfg", sid, 0)  # resuming means the session has seen something


def test_the_sweep_removes_only_old_files_of_owner_directories(tmp_path: Path) -> None:
    now = [1_000_000_000.0]
    dirs = SessionDirs(str(tmp_path / "root"), ttl=100, clock=lambda: now[0])
    owner = dirs.for_owner("acme")
    old, fresh = Path(owner.config) / "projects" / "p" / "old.jsonl", Path(owner.config) / "projects" / "p" / "new.jsonl"
    old.parent.mkdir(parents=True)
    stranger = tmp_path / "root" / "not-an-owner.txt"
    for path in (old, fresh, stranger):
        path.write_text("x")
    for path in (old, stranger):
        os.utime(path, (now[0] - 101, now[0] - 101))
    os.utime(fresh, (now[0] - 99, now[0] - 99))
    assert dirs.sweep() == 1
    assert not old.exists() and fresh.exists() and stranger.exists() and Path(owner.work).is_dir()
    # At most once per SWEEP_EVERY.
    assert dirs.sweep_due() and not dirs.sweep_due()
    now[0] += SWEEP_EVERY - 1
    assert not dirs.sweep_due()
    now[0] += 1
    assert dirs.sweep_due()


def test_owners_get_distinct_directories_named_by_a_hash(tmp_path: Path) -> None:
    dirs = SessionDirs(str(tmp_path / "root"), ttl=100)
    a, b = dirs.for_owner("acme"), dirs.for_owner("globex")
    assert a.config != b.config and a.work != b.work
    assert "acme" not in a.config and len(owner_dir_name("acme")) == 32
    assert a.fork("0f8f190e-b887-426e-8b50-c4d8f4bd8df3") is None and a.session_file("../x") is None
    # A session of one owner is not found in another's directory, however it is asked for.
    project = Path(a.config) / "projects" / "p"
    project.mkdir(parents=True)
    (project / "0f8f190e-b887-426e-8b50-c4d8f4bd8df3.jsonl").write_text("{}\n")
    assert a.session_file("0f8f190e-b887-426e-8b50-c4d8f4bd8df3") and b.fork("0f8f190e-b887-426e-8b50-c4d8f4bd8df3") is None
    copy = a.fork("0f8f190e-b887-426e-8b50-c4d8f4bd8df3")
    assert copy and (project / f"{copy.session_id}.jsonl").read_text() == "{}\n"
    assert stat.S_IMODE((project / f"{copy.session_id}.jsonl").stat().st_mode) == 0o600


def entry(kind: str, uid: str, parent: str | None) -> str:
    return json.dumps({"type": kind, "uuid": uid, "parentUuid": parent, "message": {"content": "x"}})


@pytest.mark.parametrize("lines, before, whole", [
    ([entry("user", "u1", None), entry("assistant", "a1", "u1"), '{"type": "last-prompt"}'], 0, True),
    # What the pinned CLI sometimes saves under load: the answer, not the turn it answers.
    ([entry("assistant", "a1", "u1"), '{"type": "last-prompt"}'], 0, False),
    ([entry("user", "u1", None), entry("assistant", "a1", "u1")], 1, False),  # a resumed run added no turn
    ([entry("user", "u1", None), entry("assistant", "a1", "u1"), entry("user", "u2", "a1")], 0, False),  # no answer
    ([entry("user", "u1", None), entry("assistant", "a1", "u1"), "{not json"], 0, False),
    ([], 0, False),
])
def test_an_incomplete_session_is_not_reported(tmp_path: Path, lines: list[str], before: int, whole: bool) -> None:
    owner = SessionDirs(str(tmp_path / "root"), ttl=100).for_owner("acme")
    project = Path(owner.config) / "projects" / "p"
    project.mkdir(parents=True)
    sid = "0f8f190e-b887-426e-8b50-c4d8f4bd8df3"
    (project / f"{sid}.jsonl").write_text("".join(f"{line}\n" for line in lines))
    assert owner.saved_answer(sid, before) is whole
    assert not owner.saved_answer("1f8f190e-b887-426e-8b50-c4d8f4bd8df3", 0)  # no file


def test_the_default_sessions_dir_is_per_user_in_the_temp_dir(tmp_path: Path, cli_tmp: Path) -> None:
    cfg = channel(sessions_cli_config("http://127.0.0.1:1", tmp_path / "claude", None))
    assert cfg.sessions and cfg.sessions_dir is None and cfg.sessions_ttl == 30 * 86400
    assert ClaudeCliAdaptor(cfg).sessions.root == str(cli_tmp / f"relay-cli-sessions-{os.geteuid()}")  # type: ignore[union-attr]


def test_a_relative_sessions_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absolute"):
        channel(sessions_cli_config("http://127.0.0.1:1", tmp_path / "claude", Path("relative/dir")))
