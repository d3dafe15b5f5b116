"""The person holding the simulated handset: who answers GET INPUT, GET INKEY and SELECT ITEM.

Spec: ETSI TS 102 223 §6.4.2 GET INKEY, §6.4.3 GET INPUT, §6.4.9 SELECT ITEM
(what the terminal asks the user), §8.12 (result 10: "proactive UICC session
terminated by the user", which a ``None`` answer becomes).

:class:`ScriptedUser` answers from a list, in order, so that tests and
``simwallet phone stk --script`` run unattended; it keeps the prompts it saw
(hidden inputs are recorded as hidden, never with their answer).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from simwallet.applet.protocols.cat import GetInkey, GetInput, SelectItem


class User(Protocol):
    """Answers the terminal's questions; ``None`` means the user ended the session (the red key)."""

    def get_input(self, command: GetInput) -> str | None: ...

    def get_inkey(self, command: GetInkey) -> str | None: ...

    def select_item(self, command: SelectItem) -> int | None: ...


@dataclass(frozen=True)
class Prompt:
    """A question the user saw: its kind (``input``, ``inkey``, ``select``), its text, and whether the input was hidden."""

    kind: str
    text: str
    hidden: bool = False


class ScriptedUser:
    """Answers from a script; an empty script ends the session (result 10), as a user walking away would.

    A SELECT ITEM answer is an item identifier (digits) or the exact text of an item.
    """

    def __init__(self, answers: Iterable[str] = ()) -> None:
        self._answers: deque[str] = deque(answers)
        self.prompts: list[Prompt] = []

    def __repr__(self) -> str:
        return f"ScriptedUser(answers_left={len(self._answers)}, prompts={len(self.prompts)})"

    def feed(self, *answers: str) -> None:
        self._answers.extend(answers)

    @property
    def remaining(self) -> int:
        return len(self._answers)

    def next_answer(self) -> str | None:
        return self._answers.popleft() if self._answers else None

    def get_input(self, command: GetInput) -> str | None:
        self.prompts.append(Prompt("input", command.text.text or "", command.hidden))
        return self.next_answer()

    def get_inkey(self, command: GetInkey) -> str | None:
        self.prompts.append(Prompt("inkey", command.text.text or ""))
        return self.next_answer()

    def select_item(self, command: SelectItem) -> int | None:
        self.prompts.append(Prompt("select", command.title or ""))
        answer = self.next_answer()
        return None if answer is None else item_for(command, answer)


def item_for(command: SelectItem, answer: str) -> int | None:
    """The identifier of the item ``answer`` names (its identifier or its text), or None if none does."""
    for item in command.items:
        if answer == item.text or (answer.isdigit() and int(answer) == item.identifier):
            return item.identifier
    return None
