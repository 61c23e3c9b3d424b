"""Planted wrong student functions for notebook 06 (Deep Compression), each a plausible bug, and the
questions each must lose: its own function check and every graded run that calls it (every k-means of the
weight sharing runs with ``nearest_centroid`` as its assignment step; every compressed file stores its
positions with ``relative_indices``)."""

WRONG = {
    # forgets the absolute value: argmin of the signed difference picks the largest centroid for every
    # value, so k-means collapses each layer onto one shared weight
    "nearest_centroid": '''def nearest_centroid(values, centroids):
    return (values.unsqueeze(-1) - centroids.to(values.dtype)).argmin(dim=-1)
''',
    # counts the distance to the previous position instead of the zeros between them (off by one after the
    # first entry): the file decodes every later weight one place further on
    "relative_indices": '''def relative_indices(positions, index_bits):
    span = 2**index_bits
    gaps, filler, previous = [], [], 0
    for p in np.asarray(positions, dtype=np.int64).tolist():
        gap = p - previous
        while gap >= span:
            gaps.append(span - 1)
            filler.append(True)
            gap -= span
        gaps.append(gap)
        filler.append(False)
        previous = p
    return np.array(gaps, dtype=np.int64), np.array(filler, dtype=bool)
''',
}

DOWNSTREAM = {
    "nearest_centroid": ["blocks.nearest_centroid", "blocks.kmeans_1d", "accuracy.shared",
                         "accuracy.trained"],
    "relative_indices": ["blocks.relative_indices", "roundtrip"],
}
