"""Sinks: everything a run writes (result tables, run manifest, lock), inside the output folder."""
