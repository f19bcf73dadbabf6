"""``python -m defectkit`` (and ``accelerate launch -m defectkit run RECIPE``)."""

from defectkit.cli import main

if __name__ == "__main__":
    main()
