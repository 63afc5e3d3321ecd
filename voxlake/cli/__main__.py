"""``python -m voxlake.cli``."""

from voxlake.cli import main

if __name__ == "__main__":  # importing it (a walk of the package) runs nothing
    main()
