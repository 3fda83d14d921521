"""CACR on label-shifted large-scale data: MoCo-v2-style queue + momentum encoder + shuffle-BN."""
