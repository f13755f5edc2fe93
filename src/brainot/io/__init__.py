"""The file contracts between the pipeline's stages (docs/contracts.md): each format is read and written here,
one module per format, and every reader raises :class:`DataError` naming the file, the key and what was
expected.

- :mod:`brainot.io.voxels`: the voxel matrix ``results/voxels/{subject}.h5``;
- :mod:`brainot.io.regions`: region sets ``results/rois/{subject}/{region}.h5``;
- :mod:`brainot.io.tokens`: image-token caches ``results/embeddings/{name}/{images}.h5``;
- :mod:`brainot.io.predictions`: predicted tokens ``results/predictions/{run}/{subject}.h5``;
- :mod:`brainot.io.captions`: captions and references (BrainHub JSON) ``results/{captions/{run},references}/...``;
- :mod:`brainot.io.metrics`: scores ``results/metrics/{run}/{subject}.json``;
- :mod:`brainot.io.subject`: a subject's training inputs gathered from the first three.
"""

from brainot.io.captions import read_captions, read_json, read_references, write_captions, write_references
from brainot.io.h5 import DataError, open_h5
from brainot.io.metrics import read_metrics, write_metrics
from brainot.io.predictions import (PREDICTIONS, Predictions, prediction_ids, prediction_rows, prediction_shape,
                                    read_predictions,
                                    write_predictions)
from brainot.io.regions import read_region, region_of, region_subject, write_region
from brainot.io.subject import SubjectData, load_subject
from brainot.io.tokens import EMBEDDING_BLOCK, EMBEDDINGS, cached_ids, embedding_name, embedding_shape, read_tokens
from brainot.io.voxels import (SPLITS, VOXELS, average_repeats, n_voxels, read_split, read_subject,
                               read_voxel_xyz, test_nsd_ids)

__all__ = [
    "DataError", "open_h5",
    "VOXELS", "SPLITS", "read_split", "n_voxels", "read_subject", "read_voxel_xyz", "test_nsd_ids",
    "average_repeats",
    "read_region", "write_region", "region_of", "region_subject",
    "EMBEDDINGS", "EMBEDDING_BLOCK", "read_tokens", "cached_ids", "embedding_name", "embedding_shape",
    "PREDICTIONS", "Predictions", "read_predictions", "write_predictions", "prediction_ids", "prediction_rows", "prediction_shape",
    "read_json", "read_captions", "write_captions", "read_references", "write_references",
    "read_metrics", "write_metrics",
    "SubjectData", "load_subject",
]
