"""Recipes that combine io, ml, segmentation and measure into user-level jobs."""
