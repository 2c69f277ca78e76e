"""Everything that touches sam2/hydra: registry, builder, checkpoint I/O, downloads."""
