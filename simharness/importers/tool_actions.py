"""The action a tool's name implies (read, send, delete, else write): shared by the importers
of benchmark suites and of traces, so one tool name maps to one action everywhere."""

from __future__ import annotations

READ = ("get_", "read_", "search_", "list_", "check_")
SEND = ("send_", "share_", "post_")
DELETE = ("delete_", "remove_")


def infer_action(tool: str) -> str:
    """The action a tool's name implies: get_/read_/search_/list_/check_ -> read,
    send_/share_/post_ -> send, delete_/remove_ -> delete, anything else -> write."""
    name = tool.lower()
    for prefixes, action in ((READ, "read"), (SEND, "send"), (DELETE, "delete")):
        if name.startswith(prefixes):
            return action
    return "write"


def matched(tool: str) -> bool:
    """Whether a prefix decided the action (False: `write` is only the default)."""
    return tool.lower().startswith(READ + SEND + DELETE)
