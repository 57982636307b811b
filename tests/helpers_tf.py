"""Run in a process of its own by tests/test_tf_backprop.py: TensorFlow's thread pools, sized
before its first op and fixed after it, and its call floors. (Its functional core and every
TF and Keras-on-TF Trainer on the worked example are tests/helpers_isolated.py's, as for
every isolated framework.)

TensorFlow is imported once here (it takes seconds) rather than in the test process. Exits
non-zero with the failing assertion on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from implementations import registry  # noqa: E402


def main() -> int:
    tf_module = registry.import_module("tf")
    settings = tf_module.settings(1)  # before TF's first op, as the worker calls it
    assert (settings["intra_op_threads"], settings["inter_op_threads"]) == (1, 1), settings
    assert "threads_note" not in settings and settings["onednn"] in (True, False)
    floors = tf_module.call_floors(calls=20)  # TF's first ops
    assert len(floors) == 3 and all(s > 0 and n == 20 for s, n in floors.values()), floors
    late = tf_module.settings(2)  # TF has started: the pools stay, and the record says so
    assert late["intra_op_threads"] == 1 and "cannot be modified" in late["threads_note"]
    print("ok", settings["tensorflow"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
