"""GlobalPlatform Card Specification v2.3 command codecs, for the card (the ISD) and the host (provisioning).

Spec: GP CS v2.3 §5 and §11.1.1 (life cycles), §6.6 and §11.1.2
(privileges), §11.2 (DELETE), §11.3 (GET DATA, with CPLC and the Key
Information Template), §11.4 (GET STATUS), §11.5 (INSTALL), §11.10
(SET STATUS), §11.11 (STORE DATA and DGIs); Amendment D (sensitive data
under the static DEK). SCP03 itself (INITIALIZE UPDATE, EXTERNAL
AUTHENTICATE, PUT KEY) lives in :mod:`simwallet.applet.protocols.scp03`.

Every builder returns a plain C-APDU in class ``80``; the host wraps it with
:meth:`~simwallet.applet.protocols.scp03.Scp03Host.wrap`. Every parser
raises only :class:`~simwallet.applet.errors.CodecError` (or its
:class:`~simwallet.applet.errors.TruncatedError`).

Modules
-------
* :mod:`.gp_common` — life cycles, privileges, AIDs, command framing.
* :mod:`.gp_install` — INSTALL, install parameters, SET STATUS, DELETE.
* :mod:`.gp_store` — STORE DATA, DGIs, sensitive data under the DEK.
* :mod:`.gp_status` — GET STATUS and GlobalPlatform Registry data.
* :mod:`.gp_data` — GET DATA objects (CPLC, key information, card
  recognition data) and the Security Domain FCI.

Import from this module.
"""

from __future__ import annotations

from simwallet.applet.protocols.gp_common import (
    AID_LENGTH_MAX,
    AID_LENGTH_MIN,
    CARD_LIFE_CYCLE_TRANSITIONS,
    CLA_GP,
    LOCKED_BIT,
    ApplicationLifeCycle,
    CardLifeCycle,
    GpIns,
    LoadFileLifeCycle,
    Privilege,
    check_aid,
    check_application_life_cycle,
    encode_privileges,
    is_locked,
    is_selectable,
    parse_privileges,
)
from simwallet.applet.protocols.gp_data import (
    CPLC_FIELDS,
    CPLC_LENGTH,
    KEY_TYPE_AES,
    CardRecognitionData,
    Cplc,
    DataTag,
    KeyInformation,
    SecurityDomainFci,
    build_cplc,
    build_key_information,
    data_object,
    get_data_command,
    parse_cplc,
    parse_data_object,
    parse_get_data_command,
    parse_key_information,
)
from simwallet.applet.protocols.gp_install import (
    INSTALL_FOR_LOAD_BIT,
    INSTALL_UNSUPPORTED_BITS,
    SET_STATUS_LOCK,
    SET_STATUS_UNLOCK,
    TAG_NON_VOLATILE_MEMORY_QUOTA,
    TAG_TS102226_PARAMETERS,
    TAG_VOLATILE_MEMORY_QUOTA,
    DeleteCommand,
    InstallCommand,
    InstallFor,
    InstallParameters,
    SetStatusCommand,
    StatusType,
    delete_command,
    install_for_install_command,
    install_for_make_selectable_command,
    install_for_personalization_command,
    set_status_command,
)
from simwallet.applet.protocols.gp_status import (
    SW_MORE_DATA,
    GetStatusCommand,
    RegistryData,
    StatusScope,
    build_get_status,
    get_status_command,
    parse_get_status,
)
from simwallet.applet.protocols.gp_store import (
    STORE_DATA_BLOCK_MAX,
    STORE_DATA_BLOCKS_MAX,
    Dgi,
    StoreDataCommand,
    StoreDataEncryption,
    StoreDataP1,
    StoreDataStructure,
    decrypt_sensitive,
    encode_dgis,
    encrypt_sensitive,
    is_sensitive_dgi,
    parse_dgis,
    sensitive_decryptor,
    store_data_blocks,
    store_data_commands,
)

__all__ = [
    "AID_LENGTH_MAX",
    "AID_LENGTH_MIN",
    "CARD_LIFE_CYCLE_TRANSITIONS",
    "CLA_GP",
    "CPLC_FIELDS",
    "CPLC_LENGTH",
    "INSTALL_FOR_LOAD_BIT",
    "INSTALL_UNSUPPORTED_BITS",
    "KEY_TYPE_AES",
    "LOCKED_BIT",
    "SET_STATUS_LOCK",
    "SET_STATUS_UNLOCK",
    "STORE_DATA_BLOCKS_MAX",
    "STORE_DATA_BLOCK_MAX",
    "SW_MORE_DATA",
    "TAG_NON_VOLATILE_MEMORY_QUOTA",
    "TAG_TS102226_PARAMETERS",
    "TAG_VOLATILE_MEMORY_QUOTA",
    "ApplicationLifeCycle",
    "CardLifeCycle",
    "CardRecognitionData",
    "Cplc",
    "DataTag",
    "DeleteCommand",
    "Dgi",
    "GetStatusCommand",
    "GpIns",
    "InstallCommand",
    "InstallFor",
    "InstallParameters",
    "KeyInformation",
    "LoadFileLifeCycle",
    "Privilege",
    "RegistryData",
    "SecurityDomainFci",
    "SetStatusCommand",
    "StatusScope",
    "StatusType",
    "StoreDataCommand",
    "StoreDataEncryption",
    "StoreDataP1",
    "StoreDataStructure",
    "build_cplc",
    "build_get_status",
    "build_key_information",
    "check_aid",
    "check_application_life_cycle",
    "data_object",
    "decrypt_sensitive",
    "delete_command",
    "encode_dgis",
    "encode_privileges",
    "encrypt_sensitive",
    "get_data_command",
    "get_status_command",
    "install_for_install_command",
    "install_for_make_selectable_command",
    "install_for_personalization_command",
    "is_locked",
    "is_selectable",
    "is_sensitive_dgi",
    "parse_cplc",
    "parse_data_object",
    "parse_dgis",
    "parse_get_data_command",
    "parse_get_status",
    "parse_key_information",
    "parse_privileges",
    "sensitive_decryptor",
    "set_status_command",
    "store_data_blocks",
    "store_data_commands",
]
