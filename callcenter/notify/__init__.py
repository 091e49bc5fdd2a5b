"""Notifications: trade confirmations and price alerts by SMS (SMPP), pager (SNPP), e-mail (SMTP) and webhook."""
