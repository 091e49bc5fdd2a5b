"""The IVR: phone trading menus, and what they say."""
