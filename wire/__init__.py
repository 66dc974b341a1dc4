"""Eddy: wire layer (see DESIGN.md section 1)."""
