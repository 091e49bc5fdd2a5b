"""SIP signalling (RFC 3261): messages, addresses, and later transactions, dialogs, registrar."""
