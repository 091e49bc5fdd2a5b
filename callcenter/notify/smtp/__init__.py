"""E-mail notifications: an ESMTP client that keeps its connections, over several relays with failover."""
