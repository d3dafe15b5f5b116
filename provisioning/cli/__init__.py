"""The ``simwallet`` command line (click; one module per command group).

Command tree::

    simwallet [--db URL] [--config FILE] [--json] [-v|-q]
      ledger    account open|show|list|freeze|unfreeze|close
                transfer, post-pending, void, reverse, expire
                balance, history, verify, export
                tier list|set
      promo     create, list, show, start, stop, report
      db        upgrade, current
      keys      init, list, import, rotate, retire (the master key store)
      card      readers, read, personalize, batch, verify, diagnose, emulate
      wallet    pin-set, pin-state, unlock (the service hall's PIN desk)
      gateway   run (the SMPP gateway)
      smsc      run (the embedded SMSC simulator)
      phone     send, ussd, stk, load (phones attached to the SMSC)
      simulate  month (a month of seed-like traffic through the ledger)

Modules: ``root`` (the root group, global options, error translation),
``context`` (the typed :class:`~.context.AppContext`), ``errors`` (exit
codes), ``params`` (amount and account parameter types), ``render`` (JSON and
tables), and one module per group: ``ledger``, ``accounts`` and ``tiers``
(subgroups of ``ledger``), ``promo``, ``db``, ``keys``, ``card`` (with
``card_batch`` for ``card batch``), ``wallet``, ``gateway``, ``smsc``,
``phone`` (with ``phone_stk`` for ``phone stk`` and ``phone_options`` for the
SMSC options both share), ``simulate``. The exit codes are listed in
``simwallet --help`` and in :class:`~.errors.ExitCode`.
"""

from __future__ import annotations


def main() -> None:
    """Console-script entry point (``simwallet = simwallet.provisioning.cli:main``)."""
    from simwallet.provisioning.cli.root import cli

    cli.main(prog_name="simwallet")
