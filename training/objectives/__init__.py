"""Training objectives; each module exposes OBJECTIVE, an Objective subclass (training/objective.py)."""
