"""simwallet.gateway.esme: the gateway's SMPP side — its channels (SMS, later USSD and STK) and the asyncio ESME that serves them."""
