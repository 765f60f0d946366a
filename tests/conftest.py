"""Settings for the whole suite."""

from hypothesis import settings

# No Hypothesis deadline: a per-example time limit is a timed assertion, and on a shared 2-core machine
# (CI, or several suites at once) an example that takes 200 ms is load, not a defect. Speed is checked
# by the benchmarks.
settings.register_profile("pykoii", deadline=None)
settings.load_profile("pykoii")
