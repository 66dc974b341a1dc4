"""Eddy: sim layer (see DESIGN.md section 1)."""
