"""ImageFolder data (ImageNet-1K / ImageNet-100 / ImageNet-22K)."""
