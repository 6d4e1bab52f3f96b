"""Guest scenario (needs the image and the .deb): live_im.py with lhsweep running in the DaemonSet's
pod under containerd instead of the systemd service; the same steps and checks."""

from __future__ import annotations

from lhvm import pod

if __name__ == "__main__":
    pod.run_scenario("live_im")
