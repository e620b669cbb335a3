"""``python -m cnncli`` runs the command-line app."""

from .cli import main

if __name__ == "__main__":
    main()
