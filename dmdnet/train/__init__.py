"""Training: losses, discriminators and the shared trainer (DESIGN.md, "Training layout")."""
