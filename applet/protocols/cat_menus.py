"""The menu commands: SET UP MENU and SELECT ITEM (ETSI TS 102 223 §6.6.7, §6.6.8; items §8.9, §8.24, §8.32).

Both list their items as Item data objects (identifier + text in the alpha
identifier coding of TS 102 221 Annex A). SET UP MENU with no items is the
"remove menu" form, sent as one Item object of length zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import decode_alpha, encode_alpha
from simwallet.applet.protocols.cat_command_base import (
    ProactiveCommandBase,
    alpha_value,
    obj,
    opt,
    take_alpha,
    take_icon,
    take_raw,
    value_of,
)
from simwallet.applet.protocols.cat_enums import CommandType, Tag
from simwallet.applet.protocols.cat_tlv import (
    CtlvReader,
    IconIdentifier,
    Item,
    ItemIconIdentifierList,
    encode_bytes_list,
    known_command_types,
)
from simwallet.applet.protocols.tlv import Ctlv


def _menu_objects(
    items: tuple[Item, ...],
    next_actions: tuple[int, ...] | None,
    default_item: int | None,
    icon: IconIdentifier | None,
    item_icons: ItemIconIdentifierList | None,
    text_attribute: bytes | None,
    item_text_attributes: bytes | None,
) -> list[Ctlv]:
    # TS 102 223 §6.6.7 / §6.6.8: items, next actions, (default item), icon, item icons, text attributes.
    body = [obj(Tag.ITEM, item.to_value()) for item in items] or [obj(Tag.ITEM, b"")]
    body += opt(Tag.ITEMS_NEXT_ACTION_INDICATOR, None if next_actions is None else encode_bytes_list(next_actions, "next action"), cr=False)
    body += opt(Tag.ITEM_IDENTIFIER, None if default_item is None else encode_bytes_list((default_item,), "item identifier"), cr=False)
    body += opt(Tag.ICON_IDENTIFIER, value_of(icon))
    body += opt(Tag.ITEM_ICON_IDENTIFIER_LIST, value_of(item_icons))
    body += opt(Tag.TEXT_ATTRIBUTE, text_attribute)
    body += opt(Tag.ITEM_TEXT_ATTRIBUTE_LIST, item_text_attributes)
    return body


def _parse_menu(r: CtlvReader) -> dict[str, Any]:
    raw_items = [c.value for c in r.take_all(Tag.ITEM)]
    if raw_items == [b""]:
        items: tuple[Item, ...] = ()
    elif not raw_items:
        raise CodecError("mandatory data object ITEM (0F) is missing")
    else:
        items = tuple(Item.from_value(v) for v in raw_items)
    next_actions = take_raw(r, Tag.ITEMS_NEXT_ACTION_INDICATOR)
    icons = r.take(Tag.ITEM_ICON_IDENTIFIER_LIST)
    return {
        "items": items,
        "next_actions": None if next_actions is None else known_command_types(next_actions),
        "icon": take_icon(r),
        "item_icons": None if icons is None else ItemIconIdentifierList.from_value(icons.value),
        "text_attribute": take_raw(r, Tag.TEXT_ATTRIBUTE),
        "item_text_attributes": take_raw(r, Tag.ITEM_TEXT_ATTRIBUTE_LIST),
    }


# TS 102 223 §6.6.7: SET UP MENU — alpha identifier (the title), items, items next action indicator,
# icon identifier, item icon identifier list, text attribute, item text attribute list.
# No items at all is the "remove menu" form: one Item object of length zero.
@dataclass(frozen=True, kw_only=True)
class SetUpMenu(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.SET_UP_MENU

    title: str
    items: tuple[Item, ...]
    next_actions: tuple[int, ...] | None = None
    icon: IconIdentifier | None = None
    item_icons: ItemIconIdentifierList | None = None
    text_attribute: bytes | None = None
    item_text_attributes: bytes | None = None

    @classmethod
    def remove(cls, number: int = 1) -> SetUpMenu:
        """The command that removes the card's menu from the handset."""
        return cls(number=number, title="", items=())

    @property
    def removes_menu(self) -> bool:
        return not self.items

    def _body(self) -> list[Ctlv]:
        menu = _menu_objects(
            self.items, self.next_actions, None, self.icon, self.item_icons, self.text_attribute, self.item_text_attributes
        )
        return [obj(Tag.ALPHA_IDENTIFIER, encode_alpha(self.title)), *menu]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        return {"title": decode_alpha(r.require(Tag.ALPHA_IDENTIFIER).value), **_parse_menu(r)}


# TS 102 223 §6.6.8: SELECT ITEM — alpha identifier, items, items next action indicator, item identifier
# (the default item), icon identifier, item icon identifier list, text attribute, item text attribute list.
@dataclass(frozen=True, kw_only=True)
class SelectItem(ProactiveCommandBase):
    TYPE: ClassVar[int] = CommandType.SELECT_ITEM

    items: tuple[Item, ...]
    title: str | None = None
    next_actions: tuple[int, ...] | None = None
    default_item: int | None = None
    icon: IconIdentifier | None = None
    item_icons: ItemIconIdentifierList | None = None
    text_attribute: bytes | None = None
    item_text_attributes: bytes | None = None

    def __post_init__(self) -> None:
        if not self.items:
            raise CodecError("SELECT ITEM needs at least one item")
        super().__post_init__()

    def _body(self) -> list[Ctlv]:
        menu = _menu_objects(
            self.items, self.next_actions, self.default_item, self.icon, self.item_icons, self.text_attribute, self.item_text_attributes
        )
        return [*opt(Tag.ALPHA_IDENTIFIER, alpha_value(self.title)), *menu]

    @classmethod
    def _parse_body(cls, r: CtlvReader) -> dict[str, Any]:
        title = take_alpha(r)
        default = take_raw(r, Tag.ITEM_IDENTIFIER)
        if default is not None and len(default) != 1:
            raise CodecError(f"Item identifier needs 1 byte, got {len(default)}")
        return {"title": title, "default_item": None if default is None else default[0], **_parse_menu(r)}
