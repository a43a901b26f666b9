"""One module per reproduced paper, each defining ``REPRODUCTION`` (``gradbench.reproduce.claims``)."""
