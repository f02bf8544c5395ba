"""Control models. `get_model(name)` finds built-ins and plug-ins (entry-point group
`simharness.controls`)."""

from simharness.controls.base import (
    Control,
    Credential,
    Decision,
    Ledger,
    Request,
    World,
    get_model,
    make,
    register,
    registered,
)

__all__ = ["Control", "Credential", "Decision", "Ledger", "Request", "World", "get_model", "make",
           "register", "registered"]
