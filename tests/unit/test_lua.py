"""All of jobhub's Lua lives in jobhub/store/lua, and a script names no key of its own.

Read from the source and the script texts, no Redis needed: a script that spells a key
inside its Lua hides that key from its caller, and one written beside its caller is a
script that the rules above were never checked against.
"""

from __future__ import annotations

from pathlib import Path

from jobhub.core import keys
from jobhub.store import lua

PACKAGE = Path(__file__).resolve().parents[2] / "jobhub"
LUA = PACKAGE / "store" / "lua"


def test_every_script_lives_in_store_lua() -> None:
    outside = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if LUA not in path.parents and "redis.call(" in path.read_text()
    ]
    assert outside == []


def test_a_script_names_keys_only_through_keys_in_its_call() -> None:
    scripts = {name: getattr(lua, name) for name in lua.__all__ if name.isupper()}
    scripts = {name: text for name, text in scripts.items() if isinstance(text, str)}
    assert {"CREATE", "WRITE", "DELETE", "BEAT", "CLAIM", "RENEW_LEASE"} <= set(scripts)
    for name, text in scripts.items():
        # A channel is no key; the minute's count of ended jobs and the indexes of an ending
        # job's tags are the computed keys (its minute is Redis's clock at the end, its tags
        # are stored with it: see jobhub/store/lua/snapshots.py).
        rest = text.replace(f"'{keys.EVENTS}'", "").replace(f"'{keys.ENDED}' ..", "")
        rest = rest.replace(f"'{keys.TAG_UPDATES}' ..", "").replace(f"'{keys.TAGGED}' ..", "")
        rest = rest.replace(f"'{keys.TAG_CHANGES}' ..", "")
        # A child's write builds its batch's keys from the batch_id stored with the child (its
        # writers cannot know it without a round trip), a batch's read the keys of the
        # children its change log names, and an ended batch queues its webhook
        # (jobhub/store/lua/batches.py).
        rest = rest.replace(f"'{keys.BATCH}' ..", "").replace(f"'{keys.BATCH_CHANGES}' ..", "")
        rest = rest.replace(f"'{keys.BATCH_CHILDREN}' ..", "")
        rest = rest.replace(f"'{keys.BATCH_UPDATES}' ..", "")
        rest = rest.replace(f"'{keys.BATCH_WEBHOOKS}'", "")
        if name == "BATCH_READ":
            rest = rest.replace(f"'{keys.job_snapshot('')}' ..", "")
        assert keys.PREFIX not in rest, name
