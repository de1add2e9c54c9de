"""Compaction: plan (planner, strategy), execute (rewrite, zorder, execute), commit (commit), job (job)."""
