"""Experience collection: the MCTS planner, multi-agent exploration and episode records."""
