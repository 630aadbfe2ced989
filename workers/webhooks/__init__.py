"""The webhooks layer: a stored delivery parsed strictly, as the platform of its route, and
each change applied (Instagram story insights, Threads publish and delete)."""
