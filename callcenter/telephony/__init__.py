"""The telephony subsystem: SIP signalling and (to come) the media engine, wired together."""
