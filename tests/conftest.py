"""Suite-wide settings.

XLA on CPU compiles the "partitionable" threefry PRNG slowly: about 2.5 s per distinct
random-tensor shape on 2 cores (seen with jax 0.10), which dominates model-init compiles in the
generated zoo tests. The suite therefore uses the classic threefry implementation. It is set
through the environment (before jax is imported) so subprocesses started by tests (the CLI in
the SIGKILL test) draw the same random numbers as the in-process runs they are compared with.
Library code does not touch this setting.
"""

import os

os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
