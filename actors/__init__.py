"""Eddy: actors layer (see DESIGN.md section 1)."""
