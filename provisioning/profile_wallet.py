"""The STK wallet applet's parameters in a profile (``wallet:``): menu texts, service number, TAR, PIN tries.

Spec: ETSI TS 102 223 §6.6.7 (SET UP MENU: the title and items the handset
shows, alpha identifiers of TS 102 221 Annex A), ETSI TS 102 225 §5.1.1 (the
TAR that addresses the applet in secured packets), 3GPP TS 22.090 (USSD
codes such as ``*166#``).

The personalization step writes these with STORE DATA; here they are only
checked and typed. Every menu item has a text in each language of the menu
title, and the wallet's ``language`` is one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import encode_alpha
from simwallet.provisioning.profile_files import FieldProblem
from simwallet.provisioning.profile_templates import TreePath

# STK menu texts: a handset shows about this many characters on a line.
WALLET_TEXT_CHARS_MAX = 40
# TS 102 225 §5.1.1: the TAR is 3 bytes.
TAR_BYTES = 3
# The SMS short code or number the applet's messages go to.
_SERVICE_NUMBER = re.compile(r"\+?[0-9]{3,20}")
_USSD_CODE = re.compile(r"\*[0-9*]{1,20}#")
_TAR = re.compile(r"[0-9A-Fa-f]{6}")


@dataclass(frozen=True)
class MenuItem:
    """One item of the wallet's STK menu: its item identifier, the action it starts, its text per language."""

    item_id: int
    action: str
    titles: Mapping[str, str]

    def title(self, language: str) -> str:
        return self.titles[language]


@dataclass(frozen=True)
class WalletParams:
    """The STK wallet applet's parameters (written by personalization with STORE DATA).

    ``tar`` is the applet's toolkit application reference (TS 102 225 §5.1.1),
    ``service_number`` the short code its SMS go to, ``menu_title`` and each
    item's ``titles`` keyed by ISO 639 language.
    """

    language: str
    service_number: str
    tar: bytes
    menu_title: Mapping[str, str]
    menu: tuple[MenuItem, ...]
    pin_tries: int = 3
    ussd_code: str | None = None

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.menu_title)


def wallet_params(raw: object) -> WalletParams:
    """The wallet parameters of a rendered ``wallet:`` mapping; FieldProblem (relative to ``wallet``) names what is wrong."""
    assert isinstance(raw, dict)
    problems: list[FieldProblem] = []

    def check(ok: bool, path: TreePath, message: str) -> None:
        if not ok:
            problems.append(FieldProblem(path, message))

    titles: Mapping[str, str] = raw["menu_title"]
    languages = set(titles)
    language = raw["language"]
    check(language in languages, ("language",), f"{language!r} has no menu_title (languages: {', '.join(sorted(languages))})")
    service_number = raw["service_number"]
    check(bool(_SERVICE_NUMBER.fullmatch(service_number)), ("service_number",), f"{service_number!r} is not 3 to 20 digits")
    ussd = raw.get("ussd_code")
    check(ussd is None or bool(_USSD_CODE.fullmatch(ussd)), ("ussd_code",), f"{ussd!r} is not a USSD code like *166#")
    tar = raw["tar"]
    check(bool(_TAR.fullmatch(tar)), ("tar",), f"{tar!r} is not {TAR_BYTES} bytes of hex")
    _texts(titles, ("menu_title",), check)
    items: list[MenuItem] = []
    seen_ids: set[int] = set()
    seen_actions: set[str] = set()
    for index, item in enumerate(raw["menu"]):
        where: TreePath = ("menu", index)
        check(item["id"] not in seen_ids, (*where, "id"), f"item id {item['id']} given twice")
        check(item["action"] not in seen_actions, (*where, "action"), f"action {item['action']!r} given twice")
        seen_ids.add(item["id"])
        seen_actions.add(item["action"])
        check(set(item["title"]) == languages, (*where, "title"), f"needs a title in each menu language ({', '.join(sorted(languages))})")
        _texts(item["title"], (*where, "title"), check)
        items.append(MenuItem(item["id"], item["action"], MappingProxyType(dict(item["title"]))))
    if problems:
        raise problems[0]
    return WalletParams(
        language,
        service_number,
        bytes.fromhex(tar),
        MappingProxyType(dict(titles)),
        tuple(items),
        int(raw.get("pin_tries", 3)),
        ussd,
    )


def _texts(titles: Mapping[str, str], path: TreePath, check: Callable[[bool, TreePath, str], None]) -> None:
    for lang, text in titles.items():
        check(len(text) <= WALLET_TEXT_CHARS_MAX, (*path, lang), f"more than {WALLET_TEXT_CHARS_MAX} characters")
        try:
            encode_alpha(text)
        except CodecError as exc:
            check(False, (*path, lang), exc.message)
