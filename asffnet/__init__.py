"""ASFFNet512 (Li et al., CVPR 2020, the author's 512² release): multi-exemplar face restoration."""
