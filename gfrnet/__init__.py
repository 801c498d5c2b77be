"""GFRNet (Li et al., ECCV 2018): blind face restoration guided by a warped high-quality reference."""
