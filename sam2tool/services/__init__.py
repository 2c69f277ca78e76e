"""Services: what each command does, with typed inputs and results (no Typer, no printing)."""
