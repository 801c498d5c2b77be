"""dmdnet package."""
