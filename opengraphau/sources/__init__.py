"""Sources: what a run reads (inputs expanded, images decoded, video and camera frames)."""
