"""torchdev: reproducible PyTorch 2.0 images built from one declared matrix (images.yaml)."""
