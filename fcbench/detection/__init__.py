"""Object and face detection: the detector, motion gating on video, and the detect -> embed -> identify pipeline.

The SSD detector's parts outside the network (the network is ``fcbench.models.ssd``): anchors, box
encoding and postprocessing in numpy only (a device's bench worker decodes without torch), and the
MultiBox loss (``fcbench.detection.loss``, torch). Motion gating: ``gating``; the video runner and the
identification pipeline: ``pipeline`` and ``align``.
"""

from fcbench.detection.anchors import VARIANCES, anchors_for, feature_maps
from fcbench.detection.boxes import decode_boxes, encode, iou
from fcbench.detection.postprocess import decode, decode_batch, decoder, nms

__all__ = ["VARIANCES", "anchors_for", "decode", "decode_batch", "decode_boxes", "decoder", "encode",
           "feature_maps", "iou", "nms"]
