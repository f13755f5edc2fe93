"""The embedded demo: a simulated NSD in NSD's exact layout, and the small CLIP and captioner the workflow builds for it."""
