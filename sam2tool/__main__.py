"""Allow ``python -m sam2tool``."""

from sam2tool.cli import main

if __name__ == "__main__":
    main()
