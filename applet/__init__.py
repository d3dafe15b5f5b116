"""simwallet.applet: the card side (virtual UICC, STK wallet applet, handset simulator).

The card never imports :mod:`simwallet.gateway` or :mod:`simwallet.provisioning`.
Its pure codecs live in :mod:`simwallet.applet.protocols`, which the other two
packages import.
"""
