"""A framework whose package is not installed, for tests/test_faults.py: only its declarations
are ever read (the registry never imports a module whose package is missing)."""

from implementations.contract import Framework, Variant

FRAMEWORK = Framework("ghost", label="Ghost", packages=("backprop_bench_ghost_package",),
                      order=96)
VARIANTS = (
    Variant("ghost", "idiomatic", "a framework that is not installed here"),
)
