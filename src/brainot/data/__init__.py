"""The data: NSD's bucket layout, the download, the experiment design, valid-voxel extraction, ROI masks and COCO captions."""
