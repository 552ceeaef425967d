import os
import sys
from pathlib import Path

# The engine runs on the CPU in tests; keep XLA from grabbing every core's worth of threads.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))
