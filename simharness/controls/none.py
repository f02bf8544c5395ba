"""`none`: the reference run. Every identity holds everything; nothing is decided or logged."""

from __future__ import annotations

from simharness.controls.base import ALLOW, Control, Decision, Request, register


@register
class NoControl(Control):
    model = "none"
    description = "reference: standing grant of everything, allows all, sees nothing"
    standing = True

    def standing_grant(self, archetype: str):
        return self.world.all_perms

    def decide(self, req: Request) -> Decision:
        return ALLOW

    def visible(self, req: Request) -> bool:
        return False
