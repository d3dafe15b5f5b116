"""simwallet.applet.protocols: pure codecs of everything that crosses the card's boundary."""
