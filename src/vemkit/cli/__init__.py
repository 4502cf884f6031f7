"""Command-line front end (Typer). Thin: parse, call a pipeline, print where results went."""
