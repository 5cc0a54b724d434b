"""Turn a downloaded public dataset into a checked datalist with seeded cross-validation folds (datasets/README.md).

The same command as ``pipeline-prepare`` (installed by ``pip install -e .``); kept so that existing commands work::

    python datasets/prepare.py kaggle_lung --source ~/data/finding-lungs-in-ct-data --out data/kaggle_lung
    python datasets/prepare.py kvasir --source ~/data/Kvasir-SEG --out data/kvasir --num_folds 5 --seed 0
    python datasets/prepare.py montgomery --source ~/data/MontgomerySet --out data/montgomery
    python datasets/prepare.py folder --source ~/data/mine --out data/mine --mask_dir labels --mask_suffix _mask
"""

from pipeline.intake.prepare import prepare_main as main

__all__ = ["main"]

if __name__ == "__main__":
    main()
