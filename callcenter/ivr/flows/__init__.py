"""The IVR's call flows, each a plain callable over an IChannel."""
