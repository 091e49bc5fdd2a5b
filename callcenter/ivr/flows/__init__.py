"""The IVR's call flows, each a plain callable over an IChannel."""

# The flows the IVR service runs by name: routes' "ivr:<name>", FastAGI's
# agi://host/<name>, and the keys of a main menu.
FLOWS = ("trading", "bulletins", "experts")

# The languages a caller may choose, with the key the language offer gives
# each, as its recorded "language-offer" prompt says it.
LANGUAGE_KEYS = {"zh": "1", "en": "2"}
