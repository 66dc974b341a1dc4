"""Eddy: engine layer (see DESIGN.md section 1)."""
