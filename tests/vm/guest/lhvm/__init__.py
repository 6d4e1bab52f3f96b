"""Guest-side test library: makes Longhorn V2 devices, runs containerd, records what the kernel shows."""
