"""The ten caption metrics, per-image scores and the references they compare against."""
