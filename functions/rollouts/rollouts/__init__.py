"""Progressive delivery's decider: each minute, every running rollout is promoted, rolled back or kept."""
