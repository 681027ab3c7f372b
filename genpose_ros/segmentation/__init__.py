"""Instance segmentation: the light Mask R-CNN, its training and its mask-AP evaluation."""
