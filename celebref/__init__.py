"""Shared plumbing for the CelebRef-HQ toolkit: configuration loading and atomic file output."""
