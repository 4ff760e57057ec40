"""The SSD detector's parts outside the network: anchors, box encoding, postprocessing (numpy only,
for the bench worker) and the MultiBox loss (torch). The network is ``fcbench.models.ssd``."""

from fcbench.detection.anchors import VARIANCES, anchors_for, feature_maps
from fcbench.detection.boxes import decode_boxes, encode, iou
from fcbench.detection.postprocess import decode, decode_batch, nms

__all__ = ["VARIANCES", "anchors_for", "decode", "decode_batch", "decode_boxes", "encode", "feature_maps", "iou",
           "nms"]
