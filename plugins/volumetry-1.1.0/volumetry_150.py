"""volumetry 1.1.0: the method of volumetry 1.0.0 (the folder ``volumetry`` beside this one),
with dense tissue counted from 150 HU instead of 200 HU, so that more calcified and
contrast-enhanced tissue counts. Its results differ from 1.0.0's wherever body voxels lie
between the two thresholds.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "volumetry"))

import volumetry  # noqa: E402  (the 1.0.0 method, beside this folder)

volumetry.DENSE_THRESHOLD_HU = 150.0
run = volumetry.run
