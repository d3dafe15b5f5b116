"""Promotion campaigns (满百送30 and the like): campaign files, their schema and the grant decision.

:mod:`simwallet.gateway.promotions.rules` reads one YAML file per campaign
(``cards/promotions/*.yaml``), checks it against ``campaign.schema.json``
(JSON Schema draft 2020-12) and decides, for a qualifying transfer, whether the
reward is granted under the campaign's caps.
"""
