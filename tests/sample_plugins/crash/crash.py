"""Test plug-in: leaves a valid results.json, then crashes (CIRCUS would say finished)."""

import json
import sys
from pathlib import Path

Path(sys.argv[2], "results.json").write_text(json.dumps({"results": {}}))
print("about to crash", flush=True)
sys.exit(3)
