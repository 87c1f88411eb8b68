"""`python -m e2wm.pipeline.rank STAGE CONFIG.json`: one rank of a stage that a launcher (torchrun, deepspeed)
started: the stage's config from the file the pipeline wrote, then its entry (`e2wm.pipeline.launch.run_entry`).
A failure is this rank's error record (`e2wm.train.dist.guarded`), which the pipeline turns into its one line."""
import json
import sys
from pathlib import Path

if __name__ == "__main__":
    from e2wm.pipeline.launch import run_entry
    from e2wm.train.dist import exit_now, guarded
    stage, config = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
    exit_now(guarded(lambda: run_entry(stage, json.loads(Path(config).read_text()))))
