"""Build-time check that the installed torch is the build the variant declares.

A wrong wheel index is the usual cause of a mismatch (a CPU wheel in a CUDA image, or cu117 in cu118),
and it is cheaper to stop the build here than to find out in the smoke suite.
"""
import argparse
import sys

import torch


def problem(*, want_torch: str, want_cuda: str) -> str:
    """Return why the installed torch does not fit, or an empty string when it does."""
    public_version = torch.__version__.split("+")[0]
    if public_version != want_torch:
        return f"torch is {torch.__version__}, the variant declares {want_torch}"
    if not want_cuda:
        if torch.version.cuda is not None:
            return f"torch {torch.__version__} is a CUDA {torch.version.cuda} build, the variant declares none (cpu)"
        return ""
    if not torch.cuda._is_compiled():
        return f"torch {torch.__version__} was not compiled with CUDA, the variant declares CUDA {want_cuda}"
    if torch.version.cuda != want_cuda:
        return f"torch {torch.__version__} reports CUDA {torch.version.cuda}, the variant declares {want_cuda}"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--torch", required=True)
    parser.add_argument("--cuda", default="")
    args = parser.parse_args()
    reason = problem(want_torch=args.torch, want_cuda=args.cuda)
    if reason:
        print(f"torchdev: {reason}: check the variant's 'index' (and 'cuda') in images.yaml", file=sys.stderr)
        return 1
    print(f"verified: torch {torch.__version__}, CUDA {torch.version.cuda}, as the variant declares")
    return 0


if __name__ == "__main__":
    sys.exit(main())
