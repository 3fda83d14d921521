"""CACR ImageNet pre-training: MoCo-v3-style model (ResNet-50 / ViT), LARS / AdamW, AMP, local crops."""
