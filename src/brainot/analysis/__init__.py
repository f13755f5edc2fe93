"""Analyses of trained encoders: voxel importance, embedding maps, retrieval."""
