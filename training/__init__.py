"""Adapter training (docs/training.md): `python training/train.py <objective>`; objectives in objectives/."""
