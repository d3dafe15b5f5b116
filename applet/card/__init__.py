"""simwallet.applet.card: the virtual UICC and its link to a PC/SC reader (vpcd)."""
