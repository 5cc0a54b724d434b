"""Write the synthetic chest-CT demo dataset (see datasets/README.md), or with ``--dicom`` the demo DICOM study.

The same command as ``pipeline-demo`` (installed by ``pip install -e .``). Optional: the bundles' default command
generates ``datasets/demo_ct`` on first use::

    python datasets/make_demo.py --out datasets/demo_ct --num_cases 160 --size 256 --seed 0
    python datasets/make_demo.py --out datasets/demo_lungs --binary
    python datasets/make_demo.py --dicom datasets/demo_dicom --size 256 --num_slices 24 --seed 0
"""

from pipeline.demo.command import demo_main as main

__all__ = ["main"]

if __name__ == "__main__":
    main()
