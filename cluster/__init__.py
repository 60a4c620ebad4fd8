"""Controller side of waypoint: config, Ray start-up, the training loop, metrics, CLI entry points."""
import os

# Ray otherwise advertises the host's network address even for a local cluster; keep it on loopback.
# This must happen before `ray` is first imported, which is why it lives in the package's __init__.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
