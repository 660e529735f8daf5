"""The one line `models promote|rollback` print after moving @champion."""

from __future__ import annotations

from rich.console import Console

from trainpipe.cli.render_registry import moved_line


def printed(entry: dict) -> str:
    console = Console(record=True, width=200)
    moved_line(console, entry, "bc")
    return console.export_text().strip()


def test_a_rollback_without_a_reason_names_the_action_once():
    assert printed({"alias": "champion", "from": "2", "to": "1", "action": "rollback", "reason": "rollback"}) \
        == "bc @champion: 2 → 1 (rollback)"


def test_a_given_reason_follows_the_action():
    assert printed({"alias": "champion", "from": "1", "to": "3", "action": "promote", "reason": "fixes drift"}) \
        == "bc @champion: 1 → 3 (promote: fixes drift)"
