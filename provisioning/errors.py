"""The error root of :mod:`simwallet.provisioning`.

Spec: none of its own; the errors below it carry the codes of PC/SC
(pcsc-lite ``SCARD_*`` results, ``hresult``) where a PC/SC call failed.

Every error the provisioning library raises derives from
:class:`ProvisioningError` (the command line's own exit-code errors,
:mod:`simwallet.provisioning.cli.errors`, are click exceptions and stay
outside). The hierarchy, and who is at fault for each::

    ProvisioningError
    ├── ProvisioningStateError (RuntimeError)  local misuse: an object used out of order
    ├── PcscdError (RuntimeError)              environment: the private pcscd could not be started, reached or stopped
    │   └── PortInUseError                     environment: a vpcd port is held by another process (``port``, ``pids``)
    └── ReaderError                            remote/environment: a PC/SC call failed (``reader``, ``hresult``)
        ├── CardRemovedError                   the card left the reader, or was reset by another application
        ├── NoCardError                        the reader holds no card
        ├── ReaderBusyError                    another application holds the card exclusively
        └── UnresponsiveCardError              the card does not answer

:class:`PcscdError` and :class:`PortInUseError` live in
:mod:`simwallet.provisioning.pcscd`, :class:`ReaderError` and its kinds in
:mod:`simwallet.provisioning.reader`, next to the code that raises them. A
card that answers with an error status word raises the card side's
:class:`~simwallet.applet.errors.CardStatusError` (``sw``), which is not a
provisioning error: the card, not the station, refused.

``RuntimeError`` stays a second base where callers caught the builtin before
this root existed.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """Root of every error raised by the :mod:`simwallet.provisioning` library."""


class ProvisioningStateError(ProvisioningError, RuntimeError):
    """An object was used out of order (local misuse).

    For example a :class:`~simwallet.provisioning.pcscd.PrivatePcscd` asked
    for its pid or socket path while it is not running.
    """
