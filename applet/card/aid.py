"""Selection by DF name: which ADF or application an AID (or the start of one) names.

Spec: ISO/IEC 7816-4 §7.1.1 (SELECT by DF name: right-truncated names, first,
last, next and previous occurrence), ETSI TS 102 221 §8.5 and §11.1.1.2
(application selection, P2 b2-b1); GlobalPlatform Card Specification 2.3
§5.1.1.5 (a locked card lets only the issuer security domain be selected).

The candidates are the file system's ADFs in card-type order, then the
registry's applications in its order, each that the registry would select
(``find`` returns it). While the registry reports the card locked, only its
first application, the issuer security domain (GP 2.3 §6.3), remains.
"""

from __future__ import annotations

from typing import Final

from simwallet.applet.card.app import Application, ApplicationRegistry
from simwallet.applet.card.fileops import SW_NOT_FOUND, fail
from simwallet.applet.card.filesystem import File, FileSystem

# TS 102 221 Table 11.2, P2 b2-b1.
OCCURRENCE_FIRST: Final = 0
OCCURRENCE_LAST: Final = 1
OCCURRENCE_NEXT: Final = 2
OCCURRENCE_PREVIOUS: Final = 3

Selectable = File | Application


def aid_candidates(fs: FileSystem, registry: ApplicationRegistry | None, prefix: bytes) -> list[Selectable]:
    """ADFs, then the registry's applications, whose AID starts with ``prefix``."""
    found: list[Selectable] = [adf for adf in fs.adfs if (adf.spec.aid or b"").startswith(prefix)]
    if registry is None:
        return found
    apps = list(registry)
    locked = registry.card_locked()
    for app in apps:
        if not app.aid.startswith(prefix) or registry.find(app.aid) is not app:
            continue
        if locked and app is not apps[0]:
            continue
        found.append(app)
    return found


def occurrence(candidates: list[Selectable], current: Selectable | None, which: int) -> Selectable:
    """The first, last, next or previous candidate relative to ``current``; CardStatusError 6A82 if there is none."""
    if not candidates:
        fail(SW_NOT_FOUND)
    if which == OCCURRENCE_FIRST:
        return candidates[0]
    if which == OCCURRENCE_LAST:
        return candidates[-1]
    index = next((i for i, c in enumerate(candidates) if c is current), None)
    if index is None:
        return candidates[0] if which == OCCURRENCE_NEXT else candidates[-1]
    step = 1 if which == OCCURRENCE_NEXT else -1
    if not 0 <= index + step < len(candidates):
        fail(SW_NOT_FOUND)
    return candidates[index + step]
