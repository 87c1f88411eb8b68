"""`e2wm pipeline`: the whole method in one command (see e2wm.pipeline.run)."""
