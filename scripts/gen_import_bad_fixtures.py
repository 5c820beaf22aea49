"""Fixtures for `gfa import`'s refusals of well-formed files it must not import:
crates/gfa-core/tests/fixtures/import_bad_{f64_overflow,complex,sparse,list}.pt.

Run after scripts/gen_import_fixtures.py, with a Python that has torch 2.11 (CI does not run
this):
    python scripts/gen_import_bad_fixtures.py

  import_bad_f64_overflow.pt  import_resnet18.pt's state dict with conv1.weight in float64 and
                              one value 1e300 (finite in float64, infinite in float32);
  import_bad_complex.pt       {"w": a complex64 tensor};
  import_bad_sparse.pt        {"w": a sparse COO tensor};
  import_bad_list.pt          a list of tensors instead of a dict.
"""

import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "gfa-core",
                   "tests", "fixtures")


def main():
    sd = torch.load(os.path.join(OUT, "import_resnet18.pt"), map_location="cpu")
    w = sd["conv1.weight"].double()
    w.view(-1)[5] = 1e300
    sd["conv1.weight"] = w
    torch.save(sd, os.path.join(OUT, "import_bad_f64_overflow.pt"))
    torch.save({"w": torch.ones(2, 2, dtype=torch.complex64)},
               os.path.join(OUT, "import_bad_complex.pt"))
    torch.save({"w": torch.eye(3).to_sparse()}, os.path.join(OUT, "import_bad_sparse.pt"))
    torch.save([torch.ones(2), torch.zeros(3)], os.path.join(OUT, "import_bad_list.pt"))


if __name__ == "__main__":
    main()
