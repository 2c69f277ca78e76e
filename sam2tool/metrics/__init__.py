"""Video object segmentation metrics: J, F and J&F, computed as davis2017-evaluation does."""
