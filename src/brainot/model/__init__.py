"""The fMRI encoder and its losses, with the optimal-transport solvers."""
